"""Request bodies: read (size limit, UTF-8, JSON) and validate into plain dataclasses.

Every problem becomes an APIError naming the field (param) and what is allowed, so a
client gets a 400 it can act on and the server never sees a half-checked value.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

from starlette.requests import Request

from .errors import APIError, bad_request

CHAT_ROLES = ("system", "developer", "user", "assistant", "tool")


# --- reading the body -----------------------------------------------------------------

async def read_json(request: Request, max_bytes: int) -> dict:
    """The body as a JSON object: 413 if over max_bytes (checked before reading where the
    Content-Length says so, and while reading otherwise), 400 for bad UTF-8 or JSON."""
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            n = int(declared)
        except ValueError:
            raise bad_request("Content-Length is not an integer", code="invalid_header")
        if n > max_bytes:
            raise APIError(413, f"request body of {n} bytes exceeds the limit of {max_bytes} bytes",
                           code="request_too_large")
    parts: list[bytes] = []
    size = 0
    async for piece in request.stream():
        size += len(piece)
        if size > max_bytes:
            raise APIError(413, f"request body exceeds the limit of {max_bytes} bytes",
                           code="request_too_large")
        parts.append(piece)
    raw = b"".join(parts)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise bad_request(f"request body is not valid UTF-8 (byte {e.start})", code="invalid_utf8")
    try:
        body = json.loads(text)
    except json.JSONDecodeError as e:
        raise bad_request(f"request body is not valid JSON: {e.msg} at line {e.lineno} "
                          f"column {e.colno}", code="invalid_json")
    if not isinstance(body, dict):
        raise bad_request("request body must be a JSON object", code="invalid_json")
    if "\\u" in text:
        # JSON escapes can smuggle lone surrogates (e.g. "\\udcff"), which are not text.
        try:
            json.dumps(body, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError:
            raise bad_request("request body contains an unpaired UTF-16 surrogate escape "
                              "(not valid Unicode text)", code="invalid_utf8")
    return body


# --- field checks ---------------------------------------------------------------------

def _number(body: dict, name: str, default: float | None, lo: float | None = None,
            hi: float | None = None) -> float | None:
    v = body.get(name)
    if v is None:
        return default
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        raise bad_request(f"'{name}' must be a number, got {json.dumps(v)[:60]}", name, "invalid_type")
    if (lo is not None and v < lo) or (hi is not None and v > hi):
        raise bad_request(f"'{name}' must be in [{lo}, {hi}], got {v}", name)
    return float(v)


def _integer(body: dict, name: str, default: int | None, lo: int | None = None,
             hi: int | None = None) -> int | None:
    v = body.get(name)
    if v is None:
        return default
    if isinstance(v, float) and v.is_integer():
        v = int(v)
    if isinstance(v, bool) or not isinstance(v, int):
        raise bad_request(f"'{name}' must be an integer, got {json.dumps(v)[:60]}", name, "invalid_type")
    if (lo is not None and v < lo) or (hi is not None and v > hi):
        raise bad_request(f"'{name}' must be in [{lo}, {hi}], got {v}", name)
    return v


def _boolean(body: dict, name: str, default: bool) -> bool:
    v = body.get(name)
    if v is None:
        return default
    if not isinstance(v, bool):
        raise bad_request(f"'{name}' must be true or false, got {json.dumps(v)[:60]}", name, "invalid_type")
    return v


def _stop(body: dict) -> list[str]:
    v = body.get("stop")
    if v is None:
        return []
    if isinstance(v, str):
        v = [v]
    if not isinstance(v, list) or not all(isinstance(s, str) for s in v):
        raise bad_request("'stop' must be a string or a list of strings", "stop", "invalid_type")
    if len(v) > 16:
        raise bad_request(f"'stop' has {len(v)} strings; at most 16 are allowed", "stop")
    return [s for s in v if s]


def _logit_bias(body: dict, n_vocab: int) -> dict[int, float] | None:
    v = body.get("logit_bias")
    if v is None:
        return None
    if not isinstance(v, dict):
        raise bad_request("'logit_bias' must be an object mapping token ids to numbers",
                          "logit_bias", "invalid_type")
    out: dict[int, float] = {}
    for key, bias in v.items():
        try:
            tok = int(key)
        except ValueError:
            raise bad_request(f"'logit_bias' key {key!r} is not a token id", "logit_bias", "invalid_type")
        if not 0 <= tok < n_vocab:
            raise bad_request(f"'logit_bias' token id {tok} is out of range [0, {n_vocab})",
                              "logit_bias", "invalid_token_id")
        if isinstance(bias, bool) or not isinstance(bias, (int, float)) or not math.isfinite(bias):
            raise bad_request(f"'logit_bias' value for {key} must be a number", "logit_bias", "invalid_type")
        if not -100 <= bias <= 100:
            raise bad_request(f"'logit_bias' value for {key} must be in [-100, 100], got {bias}",
                              "logit_bias")
        out[tok] = float(bias)
    return out


@dataclass
class Common:
    """The fields chat and text completions share."""
    model: str | None
    stream: bool
    include_usage: bool
    sampling: dict[str, Any] = field(default_factory=dict)   # SamplingParams keyword arguments


def parse_common(body: dict, n_vocab: int) -> Common:
    model = body.get("model")
    if model is not None and not isinstance(model, str):
        raise bad_request("'model' must be a string", "model", "invalid_type")
    n = _integer(body, "n", 1)
    if n != 1:
        raise bad_request(f"'n' must be 1 (got {n}): one choice per request", "n")
    stream = _boolean(body, "stream", False)
    opts = body.get("stream_options")
    include_usage = False
    if opts is not None:
        if not isinstance(opts, dict):
            raise bad_request("'stream_options' must be an object", "stream_options", "invalid_type")
        include_usage = _boolean(opts, "include_usage", False)
    max_tokens = body.get("max_completion_tokens", body.get("max_tokens"))
    max_name = "max_completion_tokens" if "max_completion_tokens" in body else "max_tokens"
    if max_tokens is not None:
        max_tokens = _integer({max_name: max_tokens}, max_name, None, 1, None)
    seed = _integer(body, "seed", None)
    sampling = dict(
        temperature=_number(body, "temperature", 1.0, 0.0, 100.0),
        top_p=_number(body, "top_p", 1.0, 0.0, 1.0),
        top_k=_integer(body, "top_k", 40, 0, None),
        min_p=_number(body, "min_p", 0.05, 0.0, 1.0),
        repeat_penalty=_number(body, "repeat_penalty", 1.0, 0.0, 100.0),
        presence_penalty=_number(body, "presence_penalty", 0.0, -2.0, 2.0),
        frequency_penalty=_number(body, "frequency_penalty", 0.0, -2.0, 2.0),
        seed=seed,
        logit_bias=_logit_bias(body, n_vocab),
        max_tokens=max_tokens,
        stop=_stop(body),
        ignore_eos=_boolean(body, "ignore_eos", False),
    )
    return Common(model=model, stream=stream, include_usage=include_usage, sampling=sampling)


# --- chat -----------------------------------------------------------------------------

def _content_text(content: Any, i: int) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = []
        for part in content:
            if not isinstance(part, dict) or part.get("type") != "text" or \
                    not isinstance(part.get("text"), str):
                raise bad_request(f"messages[{i}].content parts must be "
                                  '{"type": "text", "text": "..."} (only text is supported)',
                                  f"messages[{i}].content", "invalid_type")
            texts.append(part["text"])
        return "".join(texts)
    raise bad_request(f"messages[{i}].content must be a string or a list of text parts",
                      f"messages[{i}].content", "invalid_type")


def parse_messages(body: dict) -> list[dict[str, str]]:
    """Validated messages as [{"role", "content"}] (content always a string)."""
    if "messages" not in body:
        raise bad_request("'messages' is required", "messages", "missing_required_parameter")
    msgs = body["messages"]
    if not isinstance(msgs, list) or not msgs:
        raise bad_request("'messages' must be a non-empty list", "messages", "invalid_type")
    out = []
    for i, m in enumerate(msgs):
        if not isinstance(m, dict):
            raise bad_request(f"messages[{i}] must be an object", f"messages[{i}]", "invalid_type")
        role = m.get("role")
        if role not in CHAT_ROLES:
            raise bad_request(f"messages[{i}].role {json.dumps(role)[:40]} is not one of "
                              f"{', '.join(CHAT_ROLES)}", f"messages[{i}].role", "invalid_value")
        content = m.get("content")
        if content is None and role == "assistant":
            content = ""
        msg = {"role": "system" if role == "developer" else role,
               "content": _content_text(content, i)}
        if isinstance(m.get("name"), str):
            msg["name"] = m["name"]
        out.append(msg)
    return out


@dataclass
class ChatRequest:
    messages: list[dict[str, str]]
    common: Common
    logprobs: int | None       # top_logprobs count when logprobs is true


def parse_chat(body: dict, n_vocab: int) -> ChatRequest:
    common = parse_common(body, n_vocab)
    messages = parse_messages(body)
    want = _boolean(body, "logprobs", False)
    top = _integer(body, "top_logprobs", None, 0, 20)
    if top is not None and not want:
        raise bad_request("'top_logprobs' needs 'logprobs': true", "top_logprobs")
    return ChatRequest(messages, common, (top or 0) if want else None)


# --- text completion ------------------------------------------------------------------

@dataclass
class CompletionRequest:
    prompt: str | list[int]
    common: Common
    logprobs: int | None
    echo: bool


def parse_completion(body: dict, n_vocab: int) -> CompletionRequest:
    common = parse_common(body, n_vocab)
    if "prompt" not in body:
        raise bad_request("'prompt' is required", "prompt", "missing_required_parameter")
    p = body["prompt"]
    if isinstance(p, list) and len(p) == 1 and isinstance(p[0], (str, list)):
        p = p[0]                                   # a batch of one
    if isinstance(p, str):
        prompt: str | list[int] = p
    elif isinstance(p, list) and all(isinstance(t, int) and not isinstance(t, bool) for t in p):
        bad = [t for t in p if not 0 <= t < n_vocab]
        if bad:
            raise bad_request(f"prompt token id {bad[0]} is out of range [0, {n_vocab})",
                              "prompt", "invalid_token_id")
        if not p:
            raise bad_request("'prompt' is empty", "prompt")
        prompt = list(p)
    elif isinstance(p, list):
        raise bad_request("'prompt' must be a string, a list of token ids, or a list with one "
                          "of those (one prompt per request)", "prompt", "invalid_type")
    else:
        raise bad_request("'prompt' must be a string or a list of token ids", "prompt", "invalid_type")
    logprobs = _integer(body, "logprobs", None, 0, 20)
    echo = _boolean(body, "echo", False)
    if echo:
        raise bad_request("'echo' is not supported", "echo", "unsupported_parameter")
    return CompletionRequest(prompt, common, logprobs, echo)


# --- tokenize / detokenize ------------------------------------------------------------

def parse_tokenize(body: dict) -> tuple[str, bool, bool]:
    content = body.get("content")
    if not isinstance(content, str):
        raise bad_request("'content' must be a string", "content", "invalid_type")
    return content, _boolean(body, "add_special", False), _boolean(body, "with_pieces", False)


def parse_detokenize(body: dict, n_vocab: int) -> list[int]:
    toks = body.get("tokens")
    if not isinstance(toks, list) or not all(isinstance(t, int) and not isinstance(t, bool)
                                             for t in toks):
        raise bad_request("'tokens' must be a list of integers", "tokens", "invalid_type")
    bad = [t for t in toks if not 0 <= t < n_vocab]
    if bad:
        raise bad_request(f"token id {bad[0]} is out of range [0, {n_vocab})", "tokens",
                          "invalid_token_id")
    return toks
