"""The one place where sampled token ids become output: text, stop checks, finish reasons
and logprobs (compare vLLM's output processor and detokenizer).

Each request owns a `RequestOutput`. The engine hands it every sampled token; it answers
with the text that is safe to show now (whole UTF-8 characters, nothing that could still
turn into a stop string), the token ids and logprobs behind that text, and whether the
request ends here and why.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Optional

from .outputs import TokenLogprob
from .stopping import StopStrings

__all__ = ["RequestOutput", "TokenOutput"]


@dataclass
class TokenOutput:
    """What one sampled token produces."""

    text: str
    token_ids: list[int]                      # [] when the token ended generation (EOG/stop id)
    logprobs: Optional[list[TokenLogprob]]    # None unless the request asked for logprobs
    finish_reason: Optional[str]              # None, "stop" or "length"


class RequestOutput:
    """Detokenizes, stop-checks and ends one request.

    params:     the request's sampling parameters (stop, stop_token_ids, ignore_eos,
                logprobs are read here)
    decoder:    incremental detokenizer (`push(token) -> str`, `flush() -> str`)
    eog_ids:    the tokenizer's end-of-generation ids (ignored with ignore_eos)
    n_prompt:   prompt length; max_tokens: generated tokens allowed; n_ctx: the most
                tokens (prompt + generated) the sequence may hold
    """

    def __init__(self, params: Any, decoder: Any, eog_ids: Iterable[int], *, n_prompt: int,
                 max_tokens: int, n_ctx: int) -> None:
        self.stop = StopStrings(getattr(params, "stop", None) or [])
        self.decoder = decoder
        end = set(int(t) for t in (getattr(params, "stop_token_ids", None) or ()))
        if not getattr(params, "ignore_eos", False):
            end |= set(int(t) for t in eog_ids)
        self.end_ids = frozenset(end)
        self.want_logprobs = getattr(params, "logprobs", None) is not None
        self.n_prompt = n_prompt
        self.max_tokens = max_tokens
        self.n_ctx = n_ctx
        self.n_generated = 0

    def on_token(self, token: int, sample: Any, *, grammar_done: bool = False) -> TokenOutput:
        """Account for one sampled token (`sample` has .logprob and .top_logprobs).

        grammar_done: the request's grammar is complete with this token (it stops)."""
        self.n_generated += 1
        lps = None
        if self.want_logprobs:
            top = [(int(t), float(v)) for t, v in (getattr(sample, "top_logprobs", None) or [])]
            lps = [TokenLogprob(token, float(sample.logprob), top)]
        if token in self.end_ids:
            # Counted in usage, not part of the output (no text, no token id, no logprob).
            return TokenOutput("", [], [] if lps is not None else None, "stop")
        text, stopped = self.stop.push(self.decoder.push(token))
        finish = "stop" if stopped or grammar_done else None
        if finish is None and (self.n_generated >= self.max_tokens
                               or self.n_prompt + self.n_generated >= self.n_ctx):
            finish = "length"
        return TokenOutput(text, [token], lps, finish)

    def tail(self, finish_reason: str) -> str:
        """Text still held back (a partial character, a possible stop-string start): released
        when the request ends by "stop" or "length" unless a stop string ended it."""
        if finish_reason not in ("stop", "length") or self.stop.stopped:
            return ""
        text = self.stop.push(self.decoder.flush())[0] if hasattr(self.decoder, "flush") else ""
        return text + self.stop.flush()
