"""The result types every front end returns: the Python API, the async bridge and the server.

A request's output is a stream of `CompletionChunk`s; the last one carries
`finish_reason`, `usage` and `timings`. `join_chunks` folds a stream into one
`Completion`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Sequence

from .errors import EngineError

__all__ = ["Usage", "TokenLogprob", "Timings", "CompletionChunk", "Completion", "join_chunks"]

FINISH_REASONS = ("stop", "length", "cancelled", "error")


@dataclass
class Usage:
    """Token counts of one request, as in OpenAI's `usage`.

    cached_tokens: prompt tokens whose K/V came from the prefix cache.
    """

    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass
class TokenLogprob:
    """The log-probability of one generated token and of the top alternatives."""

    token: int
    logprob: float
    top_logprobs: list[tuple[int, float]] = field(default_factory=list)  # [(id, logprob)], best first


@dataclass
class Timings:
    """Where the time of one request went (seconds, from its submission)."""

    prompt_tokens: int = 0                     # prompt tokens computed (prefix-cache hits excluded)
    prompt_s: float = 0.0                      # submission to the first sampled token
    generated_tokens: int = 0
    generate_s: float = 0.0                    # first sampled token to the end
    first_token_s: float = 0.0                 # submission to the first sampled token

    def summary(self) -> str:
        def rate(n: int, s: float) -> str:
            return f"{n / s:.1f} tok/s" if s > 0 else "-"
        n_decoded = max(self.generated_tokens - 1, 0)     # the first token comes with the prompt
        return (f"prompt {self.prompt_tokens} tokens {self.prompt_s * 1e3:.0f} ms "
                f"({rate(self.prompt_tokens, self.prompt_s)}) | "
                f"generation {self.generated_tokens} tokens {self.generate_s * 1e3:.0f} ms "
                f"({rate(n_decoded, self.generate_s)}) | "
                f"first token {self.first_token_s * 1e3:.0f} ms")


@dataclass
class CompletionChunk:
    """What one request gets after a step: new text (whole UTF-8 characters), the tokens
    behind it, and at the end the finish reason.

    finish_reason: None while running; "stop", "length", "cancelled" or "error" at the
    end, where usage and timings are set (and error holds the message of an "error").
    token_ids leave out an ending end-of-generation or stop token (it counts in usage).
    """

    text: str
    token_ids: list[int]
    finish_reason: Optional[str] = None
    usage: Optional[Usage] = None
    logprobs: Optional[list[TokenLogprob]] = None
    request_id: str = ""
    error: Optional[str] = None
    timings: Optional[Timings] = None


@dataclass
class Completion:
    """A whole generation: the chunks of one request joined."""

    text: str
    token_ids: list[int]
    finish_reason: str
    usage: Usage
    logprobs: Optional[list[TokenLogprob]] = None
    request_id: str = ""
    timings: Optional[Timings] = None


def join_chunks(chunks: Sequence[CompletionChunk]) -> Completion:
    """Fold one request's stream into a Completion (raises EngineError on an "error" end)."""
    if not chunks or chunks[-1].finish_reason is None:
        raise EngineError("the stream ended before its last chunk")
    last = chunks[-1]
    if last.finish_reason == "error":
        raise EngineError(last.error or "generation failed")
    with_lps = any(c.logprobs is not None for c in chunks)
    return Completion(text="".join(c.text for c in chunks),
                      token_ids=[t for c in chunks for t in c.token_ids],
                      finish_reason=last.finish_reason,
                      usage=last.usage or Usage(0, 0),
                      logprobs=[lp for c in chunks for lp in (c.logprobs or [])] if with_lps else None,
                      request_id=last.request_id, timings=last.timings)
