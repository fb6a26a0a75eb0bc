"""Request bodies: read (size limit, UTF-8, JSON) and validate into plain dataclasses.

Every problem becomes an APIError naming the field (param) and what is allowed, so a
client gets a 400 it can act on and the server never sees a half-checked value.
"""
from __future__ import annotations

import asyncio
import json
import math
from dataclasses import dataclass, field
from typing import Any

from starlette.requests import ClientDisconnect, Request

from .errors import APIError, bad_request

CHAT_ROLES = ("system", "developer", "user", "assistant", "tool")


# --- reading the body -----------------------------------------------------------------

MAX_JSON_DEPTH = 32        # OpenAI bodies nest at most ~6 deep (body.messages[i].content[j])
MAX_STOP_CHARS = 1024      # each stop string is searched for after every generated token
MESSAGE_CHARS = 32         # what a chat message counts against the prompt limit besides its
                           # content: about what a template adds (role markers), so the
                           # number of messages is bounded too


async def read_body(request: Request, max_bytes: int, timeout_s: float) -> bytes:
    """The raw body: 413 if over max_bytes (checked before reading where the Content-Length
    says so, and while reading otherwise), 408 (and the connection closed) if it has not
    all arrived within timeout_s, 499 (answered to nobody, nothing logged) if the client
    left before sending it all."""
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            n = int(declared)
        except ValueError:
            raise bad_request("Content-Length is not an integer", code="invalid_header")
        if n > max_bytes:
            raise APIError(413, f"request body of {n} bytes exceeds the limit of {max_bytes} bytes",
                           code="request_too_large")

    async def read() -> bytes:
        parts: list[bytes] = []
        size = 0
        async for piece in request.stream():
            size += len(piece)
            if size > max_bytes:
                raise APIError(413, f"request body exceeds the limit of {max_bytes} bytes",
                               code="request_too_large")
            parts.append(piece)
        return b"".join(parts)
    try:
        return await asyncio.wait_for(read(), timeout_s)
    except asyncio.TimeoutError:
        raise APIError(408, f"the request body did not arrive within {timeout_s:g} s "
                            "(--body-timeout)", code="request_timeout",
                       headers={"Connection": "close"})
    except ClientDisconnect:
        raise APIError(499, "the client closed the connection before sending the whole body",
                       code="client_disconnected")


def json_depth(value: Any) -> int:
    """How deeply arrays and objects nest in a decoded JSON value (a scalar: 0). Iterative
    Python, so a big body lets the event loop take the GIL while it is walked."""
    deepest = 0
    stack = [(value, 1)] if isinstance(value, (list, dict)) else []
    while stack:
        v, depth = stack.pop()
        deepest = max(deepest, depth)
        for x in (v.values() if isinstance(v, dict) else v):
            if isinstance(x, (list, dict)):
                stack.append((x, depth + 1))
    return deepest


def parse_json(raw: bytes) -> dict:
    """The body as a JSON object: 400 for bad UTF-8, bad JSON, nesting deeper than
    MAX_JSON_DEPTH or lone surrogate escapes. CPU work: callers run it off the event loop.

    The decoder itself stops at Python's recursion limit (RecursionError, about 1,000 levels),
    so a 100,000-deep body fails fast while parsing; the depth of what parsed is checked next.
    """
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise bad_request(f"request body is not valid UTF-8 (byte {e.start})", code="invalid_utf8")
    too_deep = f"at most {MAX_JSON_DEPTH} levels of arrays/objects are allowed"
    try:
        body = json.loads(text)
    except json.JSONDecodeError as e:
        raise bad_request(f"request body is not valid JSON: {e.msg} at line {e.lineno} "
                          f"column {e.colno}", code="invalid_json")
    except RecursionError:
        raise bad_request(f"request body nests arrays/objects too deeply; {too_deep}",
                          code="invalid_json")
    if text.count("[") + text.count("{") > MAX_JSON_DEPTH:     # else it cannot be too deep
        depth = json_depth(body)
        if depth > MAX_JSON_DEPTH:
            raise bad_request(f"request body nests arrays/objects {depth} deep; {too_deep}",
                              code="invalid_json")
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
    if any(len(x) > MAX_STOP_CHARS for x in v):
        raise bad_request(f"a 'stop' string is longer than {MAX_STOP_CHARS} characters", "stop")
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


# OpenAI's deprecated function-calling fields: refused with a pointer to their successors.
LEGACY_FUNCTIONS = ("functions", "function_call")

COMMON_FIELDS = frozenset({
    "model", "n", "stream", "stream_options", "max_tokens", "max_completion_tokens",
    "temperature", "top_p", "top_k", "min_p", "repeat_penalty", "presence_penalty",
    "frequency_penalty", "seed", "logit_bias", "stop", "ignore_eos", "user",
    "json_schema", "grammar"})
CHAT_FIELDS = COMMON_FIELDS | {"messages", "logprobs", "top_logprobs", "response_format",
                               "tools", "tool_choice", "parallel_tool_calls"}
COMPLETION_FIELDS = COMMON_FIELDS | {"prompt", "logprobs", "echo"}
MESSAGE_FIELDS = frozenset({"role", "content", "name", "tool_calls", "tool_call_id"})
TOOL_CALL_FIELDS = frozenset({"id", "type", "function"})


def _name(key: str) -> str:
    return key if len(key) <= 64 else key[:64] + "..."


def check_fields(obj: dict, allowed: frozenset[str], where: str = "") -> None:
    """400 naming the first field that is not in `allowed` (every accepted field is used)."""
    for key in obj:
        name = where + _name(key)
        if key in LEGACY_FUNCTIONS and not where:
            raise bad_request(f"'{name}' is OpenAI's deprecated function calling; send "
                              "'tools' and 'tool_choice'", name, "unsupported_parameter")
        if key not in allowed:
            raise bad_request(f"unknown field '{name}'; accepted here: "
                              f"{', '.join(sorted(allowed))}", name, "unknown_parameter")


def _string(body: dict, name: str) -> str | None:
    v = body.get(name)
    if v is not None and not isinstance(v, str):
        raise bad_request(f"'{name}' must be a string, got {json.dumps(v)[:60]}", name,
                          "invalid_type")
    return v


def _check_chars(n: int, limit: int, name: str, counted: str = "") -> None:
    if n > limit:
        raise bad_request(f"'{name}' has {n} characters{counted}; at most {limit} are allowed "
                          "(--max-prompt-chars)", name, "prompt_too_long")


def _json_schema(body: dict) -> dict | None:
    v = body.get("json_schema")
    if v is not None and not isinstance(v, dict):
        raise bad_request("'json_schema' must be a JSON schema object", "json_schema",
                          "invalid_type")
    return v


@dataclass
class Common:
    """The fields chat and text completions share."""
    model: str | None
    stream: bool
    include_usage: bool
    sampling: dict[str, Any] = field(default_factory=dict)   # SamplingParams keyword arguments


def parse_common(body: dict, n_vocab: int) -> Common:
    model = _string(body, "model")
    _string(body, "user")          # OpenAI's end-user id: checked, then unused (no per-user state)
    n = _integer(body, "n", 1)
    if n != 1:
        raise bad_request(f"'n' must be 1 (got {n}): one choice per request", "n")
    stream = _boolean(body, "stream", False)
    opts = body.get("stream_options")
    include_usage = False
    if opts is not None:
        if not isinstance(opts, dict):
            raise bad_request("'stream_options' must be an object", "stream_options", "invalid_type")
        if not stream:
            raise bad_request("'stream_options' needs 'stream': true", "stream_options")
        check_fields(opts, frozenset({"include_usage"}), "stream_options.")
        include_usage = _boolean(opts, "include_usage", False)
    both = body.get("max_tokens"), body.get("max_completion_tokens")
    if None not in both and both[0] != both[1]:
        raise bad_request(f"'max_tokens' ({both[0]}) and 'max_completion_tokens' ({both[1]}) "
                          "differ; send one of them", "max_tokens")
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
        json_schema=_json_schema(body),
        grammar=_string(body, "grammar"),
    )
    if sampling["json_schema"] is not None and sampling["grammar"] is not None:
        raise bad_request("send 'json_schema' or 'grammar', not both", "grammar")
    return Common(model=model, stream=stream, include_usage=include_usage, sampling=sampling)


# --- chat -----------------------------------------------------------------------------

def _content_text(content: Any, i: int) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = []
        for j, part in enumerate(content):
            if not isinstance(part, dict) or part.get("type") != "text" or \
                    not isinstance(part.get("text"), str):
                raise bad_request(f"messages[{i}].content parts must be "
                                  '{"type": "text", "text": "..."} (only text is supported)',
                                  f"messages[{i}].content", "invalid_type")
            check_fields(part, frozenset({"type", "text"}), f"messages[{i}].content[{j}].")
            texts.append(part["text"])
        return "".join(texts)
    raise bad_request(f"messages[{i}].content must be a string or a list of text parts",
                      f"messages[{i}].content", "invalid_type")


def _tool_calls(calls: Any, i: int) -> list[dict]:
    """An assistant message's earlier tool calls, checked: [{id, type: function,
    function: {name, arguments (JSON text)}}]."""
    where = f"messages[{i}].tool_calls"
    if not isinstance(calls, list):
        raise bad_request(f"{where} must be a list", where, "invalid_type")
    for j, c in enumerate(calls):
        if not isinstance(c, dict) or c.get("type", "function") != "function" or \
                not isinstance(c.get("function"), dict):
            raise bad_request(f"{where}[{j}] must be {{'type': 'function', 'function': "
                              "{'name': ..., 'arguments': ...}}", f"{where}[{j}]", "invalid_type")
        check_fields(c, TOOL_CALL_FIELDS, f"{where}[{j}].")
        fn = c["function"]
        check_fields(fn, frozenset({"name", "arguments"}), f"{where}[{j}].function.")
        if not isinstance(fn.get("name"), str) or not isinstance(fn.get("arguments", ""), str):
            raise bad_request(f"{where}[{j}].function needs a string name and arguments "
                              "(JSON text)", f"{where}[{j}].function", "invalid_type")
    return calls


def parse_messages(body: dict, max_chars: int) -> list[dict[str, str]]:
    """Validated messages as [{"role", "content"}, + "name"] (content always a string);
    400 if their contents, plus MESSAGE_CHARS for each message, add up to more than
    max_chars characters."""
    if "messages" not in body:
        raise bad_request("'messages' is required", "messages", "missing_required_parameter")
    msgs = body["messages"]
    if not isinstance(msgs, list) or not msgs:
        raise bad_request("'messages' must be a non-empty list", "messages", "invalid_type")
    out = []
    chars = 0
    for i, m in enumerate(msgs):
        if not isinstance(m, dict):
            raise bad_request(f"messages[{i}] must be an object", f"messages[{i}]", "invalid_type")
        check_fields(m, MESSAGE_FIELDS, f"messages[{i}].")
        role = m.get("role")
        if role not in CHAT_ROLES:
            raise bad_request(f"messages[{i}].role {json.dumps(role)[:40]} is not one of "
                              f"{', '.join(CHAT_ROLES)}", f"messages[{i}].role", "invalid_value")
        content = m.get("content")
        if content is None and role == "assistant":
            content = ""
        msg: dict[str, Any] = {"role": "system" if role == "developer" else role,
                               "content": _content_text(content, i)}
        if m.get("tool_calls") is not None:
            if role != "assistant":
                raise bad_request(f"messages[{i}].tool_calls belong to assistant messages",
                                  f"messages[{i}].tool_calls")
            msg["tool_calls"] = _tool_calls(m["tool_calls"], i)
        if m.get("tool_call_id") is not None:
            if role != "tool" or not isinstance(m["tool_call_id"], str):
                raise bad_request(f"messages[{i}].tool_call_id must be a string on a tool "
                                  "message", f"messages[{i}].tool_call_id")
            msg["tool_call_id"] = m["tool_call_id"]
        chars += len(msg["content"]) + MESSAGE_CHARS
        _check_chars(chars, max_chars, "messages",
                     f" (contents + {MESSAGE_CHARS} per message)")
        name = m.get("name")
        if name is not None:
            if not isinstance(name, str):
                raise bad_request(f"messages[{i}].name must be a string", f"messages[{i}].name",
                                  "invalid_type")
            _check_chars(len(name), max_chars, f"messages[{i}].name")
            msg["name"] = name           # passed to the chat template
        out.append(msg)
    return out


@dataclass
class ChatRequest:
    messages: list[dict[str, Any]]
    common: Common
    logprobs: int | None       # top_logprobs count when logprobs is true
    # Checked in depth by LLM.prepare_chat (llamalite/tools.py, grammar.py), which
    # names the field of any problem.
    tools: Any = None
    tool_choice: Any = None
    parallel_tool_calls: bool = True
    response_format: Any = None


def parse_chat(body: dict, n_vocab: int, max_chars: int) -> ChatRequest:
    check_fields(body, CHAT_FIELDS)
    common = parse_common(body, n_vocab)
    messages = parse_messages(body, max_chars)
    want = _boolean(body, "logprobs", False)
    top = _integer(body, "top_logprobs", None, 0, 20)
    if top is not None and not want:
        raise bad_request("'top_logprobs' needs 'logprobs': true", "top_logprobs")
    return ChatRequest(messages, common, (top or 0) if want else None,
                       tools=body.get("tools"), tool_choice=body.get("tool_choice"),
                       parallel_tool_calls=_boolean(body, "parallel_tool_calls", True),
                       response_format=body.get("response_format"))


# --- text completion ------------------------------------------------------------------

@dataclass
class CompletionRequest:
    prompt: str | list[int]
    common: Common
    logprobs: int | None
    echo: bool


def parse_completion(body: dict, n_vocab: int, max_chars: int) -> CompletionRequest:
    check_fields(body, COMPLETION_FIELDS)
    common = parse_common(body, n_vocab)
    if "prompt" not in body:
        raise bad_request("'prompt' is required", "prompt", "missing_required_parameter")
    p = body["prompt"]
    if isinstance(p, list) and len(p) == 1 and isinstance(p[0], (str, list)):
        p = p[0]                                   # a batch of one
    if isinstance(p, str):
        _check_chars(len(p), max_chars, "prompt")
        prompt: str | list[int] = p
    elif isinstance(p, list) and len(p) > max_chars:
        raise bad_request(f"'prompt' has {len(p)} token ids; at most {max_chars} are allowed "
                          "(--max-prompt-chars)", "prompt", "prompt_too_long")
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

def parse_tokenize(body: dict, max_chars: int) -> tuple[str, bool, bool]:
    check_fields(body, frozenset({"content", "add_special", "with_pieces"}))
    content = body.get("content")
    if not isinstance(content, str):
        raise bad_request("'content' must be a string", "content", "invalid_type")
    _check_chars(len(content), max_chars, "content")
    return content, _boolean(body, "add_special", False), _boolean(body, "with_pieces", False)


def parse_detokenize(body: dict, n_vocab: int) -> list[int]:
    check_fields(body, frozenset({"tokens"}))
    toks = body.get("tokens")
    if not isinstance(toks, list) or not all(isinstance(t, int) and not isinstance(t, bool)
                                             for t in toks):
        raise bad_request("'tokens' must be a list of integers", "tokens", "invalid_type")
    bad = [t for t in toks if not 0 <= t < n_vocab]
    if bad:
        raise bad_request(f"token id {bad[0]} is out of range [0, {n_vocab})", "tokens",
                          "invalid_token_id")
    return toks
