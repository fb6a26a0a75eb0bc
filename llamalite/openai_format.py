"""OpenAI's response shapes, made in one place for `LLM.chat` and the HTTP server alike.

`OpenAIShape("chat" | "text", model, token_bytes)` makes the objects of one request:
the whole `chat.completion` / `text_completion`, and the streamed chunks (a role chunk
first for chat, content chunks, a finish chunk, and a closing usage chunk with no
choices, as OpenAI sends with `stream_options.include_usage`).
"""
from __future__ import annotations

import time
import uuid
from typing import Any, Callable, Optional

from .outputs import Completion, TokenLogprob, Usage

__all__ = ["OpenAIShape", "usage_dict", "openai_finish_reason"]


def usage_dict(u: Optional[Usage]) -> Optional[dict]:
    if u is None:
        return None
    return {"prompt_tokens": u.prompt_tokens, "completion_tokens": u.completion_tokens,
            "total_tokens": u.total_tokens,
            "prompt_tokens_details": {"cached_tokens": u.cached_tokens}}


def openai_finish_reason(reason: Optional[str]) -> Optional[str]:
    """OpenAI knows "stop", "length" and "tool_calls"; a cancelled request ends as "stop"."""
    return reason if reason in (None, "stop", "length", "tool_calls") else "stop"


class OpenAIShape:
    """The OpenAI objects of one request.

    kind:        "chat" or "text"
    model:       the served model name
    token_bytes: a token id's raw bytes (the logprob entries show them and their text)
    """

    def __init__(self, kind: str, model: str, token_bytes: Callable[[int], bytes]) -> None:
        if kind not in ("chat", "text"):
            raise ValueError(f"kind must be 'chat' or 'text', got {kind!r}")
        self.kind = kind
        self.model = model
        self.token_bytes = token_bytes
        self.id = ("chatcmpl-" if kind == "chat" else "cmpl-") + uuid.uuid4().hex[:24]
        self.created = int(time.time())

    # --- logprobs ---

    def _piece(self, token: int) -> tuple[str, bytes]:
        raw = bytes(self.token_bytes(token))
        return raw.decode("utf-8", errors="replace"), raw

    def _chat_logprobs(self, lps: Optional[list[TokenLogprob]]) -> Optional[dict]:
        if lps is None:
            return None

        def entry(token: int, lp: float) -> dict:
            text, raw = self._piece(token)
            return {"token": text, "logprob": lp, "bytes": list(raw)}
        return {"content": [{**entry(x.token, x.logprob),
                             "top_logprobs": [entry(t, v) for t, v in x.top_logprobs]}
                            for x in lps]}

    def _text_logprobs(self, lps: Optional[list[TokenLogprob]]) -> Optional[dict]:
        if lps is None:
            return None
        tokens, offsets, offset = [], [], 0
        for x in lps:
            piece = self._piece(x.token)[0]
            tokens.append(piece)
            offsets.append(offset)
            offset += len(piece)
        return {"tokens": tokens, "token_logprobs": [x.logprob for x in lps],
                "top_logprobs": [{self._piece(t)[0]: v for t, v in x.top_logprobs} for x in lps],
                "text_offset": offsets}

    def logprobs(self, lps: Optional[list[TokenLogprob]]) -> Optional[dict]:
        return self._chat_logprobs(lps) if self.kind == "chat" else self._text_logprobs(lps)

    # --- objects ---

    def _head(self, obj: str) -> dict:
        return {"id": self.id, "object": obj, "created": self.created, "model": self.model,
                "system_fingerprint": "llamalite"}

    def whole(self, c: Completion, tool_calls: Optional[list] = None,
              content: Optional[str] = None) -> dict:
        """The non-streamed response. Chat with tool_calls (tools.ToolCall): the message
        carries them, `content` is the text beside them (None if empty), and the finish
        reason is "tool_calls"."""
        if self.kind == "chat":
            message: dict[str, Any] = {"role": "assistant", "content": c.text}
            if tool_calls:
                message = {"role": "assistant", "content": content or None,
                           "tool_calls": [t.as_openai() for t in tool_calls]}
            choice: dict[str, Any] = {"index": 0, "message": message}
            obj = "chat.completion"
        else:
            choice = {"index": 0, "text": c.text}
            obj = "text_completion"
        choice["logprobs"] = self.logprobs(c.logprobs)
        choice["finish_reason"] = openai_finish_reason("tool_calls" if tool_calls
                                                       else c.finish_reason)
        return {**self._head(obj), "choices": [choice], "usage": usage_dict(c.usage)}

    def tool_reply_events(self, c: Completion, tool_calls: list, content: Optional[str]) -> list[dict]:
        """The chunks of a chat reply that was held back to be parsed for tool calls: its
        text or its calls as deltas, then the finish chunk (after the role chunk)."""
        events = []
        if tool_calls:
            if content:
                events.append(self.chunk(content))
            for i, call in enumerate(tool_calls):
                delta = {"tool_calls": [{"index": i, **call.as_openai()}]}
                events.append({**self._head("chat.completion.chunk"), "usage": None,
                               "choices": [{"index": 0, "delta": delta, "logprobs": None,
                                            "finish_reason": None}]})
            events.append(self.chunk(None, None, "tool_calls"))
            return events
        if c.text:
            events.append(self.chunk(c.text, c.logprobs))
        events.append(self.chunk(None, None, c.finish_reason))
        return events

    def chunk(self, text: Optional[str], lps: Optional[list[TokenLogprob]] = None,
              finish: Optional[str] = None, *, role: bool = False) -> dict:
        """One streamed chunk. Chat: `text` None leaves `content` out of the delta."""
        if self.kind == "chat":
            delta: dict[str, Any] = {}
            if role:
                delta["role"] = "assistant"
            if text is not None:
                delta["content"] = text
            choice: dict[str, Any] = {"index": 0, "delta": delta}
            obj = "chat.completion.chunk"
        else:
            choice = {"index": 0, "text": text or ""}
            obj = "text_completion"
        choice["logprobs"] = self.logprobs(lps)
        choice["finish_reason"] = openai_finish_reason(finish)
        return {**self._head(obj), "choices": [choice], "usage": None}

    def usage_chunk(self, u: Optional[Usage]) -> dict:
        """The closing chunk: no choices, the request's usage."""
        obj = "chat.completion.chunk" if self.kind == "chat" else "text_completion"
        return {**self._head(obj), "choices": [], "usage": usage_dict(u)}

    def events(self, c: Any) -> list[dict]:
        """The OpenAI chunks one `CompletionChunk` makes (none for an empty one): its
        content, then a finish chunk when it ends the request. The caller sends
        `chunk("", role=True)` first (chat) and `usage_chunk` last."""
        out = []
        if c.text or c.logprobs:
            out.append(self.chunk(c.text, c.logprobs))
        if c.finish_reason is not None:
            out.append(self.chunk(None if self.kind == "chat" else "", None, c.finish_reason))
        return out
