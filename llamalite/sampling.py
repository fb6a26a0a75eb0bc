"""Token sampling: penalties, logit bias, top-k, top-p, min-p, temperature, a seeded draw.

The order is llama.cpp's default sampler chain::

    penalties -> logit_bias -> top_k -> top_p -> min_p -> temperature -> draw

`temperature == 0` is greedy decoding: the argmax of the penalised and biased
logits (ties go to the lowest id); the filters do not change an argmax.

Each step touches the whole vocabulary only a few times (a copy when penalties or
a bias apply, one C++ top-k pass, an argmax); everything after top-k works on the
few surviving candidates. Top-p with top-k switched off checks the best 64, then
512 against the whole vocabulary's mass, and only for a flat distribution falls
back to a C++ selection by logit buckets; the vocabulary is never sorted.

Logprobs (``SamplingParams.logprobs = n``) are those of the distribution the token
is drawn from: the kept candidates, renormalised, at the sampling temperature. For
greedy decoding they are the log-softmax of the penalised logits over the whole
vocabulary (temperature 1).

>>> import numpy as np
>>> sampler = Sampler(SamplingParams(temperature=0.0, logprobs=1), n_vocab=4)
>>> r = sampler.sample(np.array([0.0, 2.0, 1.0, 2.0], dtype=np.float32), history=[])
>>> r.token, [tid for tid, _ in r.top_logprobs]
(1, [1])
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Optional, Union, Sequence

import numpy as np

from . import _core

__all__ = ["SamplingParams", "SampleResult", "Sampler"]


@dataclass
class SamplingParams:
    """How to pick each next token, and when to stop.

    >>> SamplingParams(temperature=0.0, max_tokens=16, stop=["\\n\\n"]).validate(n_vocab=49152)
    """

    # --- filters and temperature (llama.cpp's defaults) ---
    temperature: float = 0.8          # 0: greedy
    top_k: int = 40                   # <= 0: off
    top_p: float = 0.95               # 1.0: off
    min_p: float = 0.05               # 0.0: off
    # --- penalties over the last repeat_last_n tokens of the history ---
    repeat_penalty: float = 1.0       # 1.0: off; > 1 discourages repeats
    repeat_last_n: int = 64           # 0: off, -1: the whole history
    presence_penalty: float = 0.0     # subtracted once from every token seen
    frequency_penalty: float = 0.0    # subtracted per occurrence
    # --- randomness and bias ---
    seed: Optional[int] = None        # None: a fresh random seed
    logit_bias: Optional[dict[int, float]] = None  # token id -> added to its logit (-inf bans)
    # --- stopping ---
    max_tokens: Optional[int] = 256   # None: until the context is full (OpenAI's meaning)
    stop: list[str] = field(default_factory=list)
    stop_token_ids: list[int] = field(default_factory=list)
    ignore_eos: bool = False          # keep going past the model's end-of-generation tokens
    # --- output ---
    logprobs: Optional[int] = None    # None: none; n >= 0: the chosen token's plus the top n
    # --- structured output (grammar.py: a token mask applied before sampling) ---
    json_schema: Optional[Union[dict, str]] = None  # the reply is JSON valid under this schema
    grammar: Optional[str] = None     # the reply follows this GBNF (or Lark) grammar

    def __post_init__(self) -> None:
        if isinstance(self.stop, str):
            self.stop = [self.stop]

    def validate(self, n_vocab: int) -> None:
        """Raise ValueError naming the first bad value (and what is allowed)."""
        def bad(name: str, value: object, allowed: str) -> ValueError:
            return ValueError(f"sampling parameter {name}={value!r} is invalid: {allowed}")

        def number(name: str, value: object) -> float:
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise bad(name, value, "must be a number")
            return float(value)

        def integer(name: str, value: object) -> int:
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
                raise bad(name, value, "must be an integer")
            return int(value)

        t = number("temperature", self.temperature)
        if not (math.isfinite(t) and t >= 0):
            raise bad("temperature", self.temperature, "must be a finite number >= 0 (0 is greedy)")
        if integer("top_k", self.top_k) < -1:
            raise bad("top_k", self.top_k, "must be >= 0 (0 or -1 switch it off)")
        p = number("top_p", self.top_p)
        if not (0.0 < p <= 1.0):
            raise bad("top_p", self.top_p, "must be in (0, 1] (1 switches it off)")
        mp = number("min_p", self.min_p)
        if not (0.0 <= mp <= 1.0):
            raise bad("min_p", self.min_p, "must be in [0, 1] (0 switches it off)")
        rp = number("repeat_penalty", self.repeat_penalty)
        if not (math.isfinite(rp) and rp > 0):
            raise bad("repeat_penalty", self.repeat_penalty, "must be a finite number > 0 (1 is off)")
        if integer("repeat_last_n", self.repeat_last_n) < -1:
            raise bad("repeat_last_n", self.repeat_last_n, "must be >= -1 (-1: the whole history)")
        for name in ("presence_penalty", "frequency_penalty"):
            if not math.isfinite(number(name, getattr(self, name))):
                raise bad(name, getattr(self, name), "must be a finite number")
        if self.seed is not None and integer("seed", self.seed) < 0:
            raise bad("seed", self.seed, "must be an integer >= 0 or None (random)")
        if self.logit_bias is not None:
            if not isinstance(self.logit_bias, dict):
                raise bad("logit_bias", self.logit_bias, "must be a dict {token id: bias}")
            for tid, b in self.logit_bias.items():
                self._check_token_id("logit_bias", tid, n_vocab)
                bv = number(f"logit_bias[{tid}]", b)
                if math.isnan(bv) or bv == math.inf:
                    raise bad(f"logit_bias[{tid}]", b, "must be finite or -inf (to ban the token)")
        if self.max_tokens is not None and integer("max_tokens", self.max_tokens) < 1:
            raise bad("max_tokens", self.max_tokens, "must be >= 1")
        if not isinstance(self.stop, (list, tuple)) or not all(isinstance(s, str) and s
                                                               for s in self.stop):
            raise bad("stop", self.stop, "must be a list of non-empty strings")
        if not isinstance(self.stop_token_ids, (list, tuple)):
            raise bad("stop_token_ids", self.stop_token_ids, "must be a list of token ids")
        for tid in self.stop_token_ids:
            self._check_token_id("stop_token_ids", tid, n_vocab)
        if self.json_schema is not None and self.grammar is not None:
            raise bad("grammar", "...", "give json_schema or grammar, not both")
        if self.json_schema is not None and not isinstance(self.json_schema, (dict, str)):
            raise bad("json_schema", self.json_schema, "must be a JSON schema (dict or JSON text)")
        if self.grammar is not None and not (isinstance(self.grammar, str) and self.grammar.strip()):
            raise bad("grammar", self.grammar, "must be a non-empty GBNF grammar text")
        if self.logprobs is not None:
            n = integer("logprobs", self.logprobs)
            if not (0 <= n <= n_vocab):
                raise bad("logprobs", self.logprobs, f"must be None or in [0, {n_vocab}]")

    @staticmethod
    def _check_token_id(name: str, tid: object, n_vocab: int) -> None:
        if isinstance(tid, bool) or not isinstance(tid, (int, np.integer)):
            raise ValueError(f"sampling parameter {name}: token id {tid!r} is not an integer")
        if not 0 <= int(tid) < n_vocab:
            raise ValueError(f"sampling parameter {name}: token id {tid} is outside the "
                             f"vocabulary [0, {n_vocab})")


@dataclass
class SampleResult:
    """One sampled token; the logprobs are None unless SamplingParams.logprobs was set."""

    token: int
    logprob: Optional[float] = None
    top_logprobs: Optional[list[tuple[int, float]]] = None   # [(token id, logprob)], best first


class Sampler:
    """Picks tokens from logits for one sequence with fixed SamplingParams.

    The random stream is the sampler's own: the same seed and the same logits give
    the same tokens.

    >>> import numpy as np
    >>> s = Sampler(SamplingParams(seed=1), n_vocab=3)
    >>> s.sample(np.array([5.0, 0.0, 0.0], dtype=np.float32), history=[]).token
    0
    """

    def __init__(self, params: SamplingParams, n_vocab: int) -> None:
        params.validate(n_vocab)
        self.params = params
        self.n_vocab = n_vocab
        self.rng = np.random.default_rng(params.seed)
        self._bias_ids = self._bias_values = None
        if params.logit_bias:
            self._bias_ids = np.fromiter((int(k) for k in params.logit_bias), dtype=np.int64)
            self._bias_values = np.fromiter((float(v) for v in params.logit_bias.values()),
                                            dtype=np.float32)

    # --- the chain ---

    def sample(self, logits: np.ndarray, history: Sequence[int]) -> SampleResult:
        """Pick the next token from float32 logits [n_vocab]; history is every token so far."""
        if logits.shape != (self.n_vocab,):
            raise ValueError(f"logits have shape {logits.shape}, expected ({self.n_vocab},)")
        x = self._penalised(np.asarray(logits, dtype=np.float32), history)
        if self.params.temperature <= 0:
            return self._greedy(x)
        ids, vals = self._filtered(x)                 # the kept candidates, float64 logits
        scaled = vals / self.params.temperature
        top = float(scaled.max())
        cdf = np.cumsum(np.exp(scaled - top))
        pick = int(np.searchsorted(cdf, self.rng.random() * cdf[-1], side="right"))
        pick = min(pick, len(ids) - 1)
        if self.params.logprobs is None:
            return SampleResult(int(ids[pick]))
        lps = scaled - top - math.log(cdf[-1])
        best = _core.top_k_indices(lps.astype(np.float32), self.params.logprobs)
        return SampleResult(int(ids[pick]), float(lps[pick]),
                            [(int(ids[i]), float(lps[i])) for i in best])

    def _penalised(self, x: np.ndarray, history: Sequence[int]) -> np.ndarray:
        """Repeat/presence/frequency penalties then logit_bias, on a copy when any applies."""
        p = self.params
        last_n = len(history) if p.repeat_last_n == -1 else min(p.repeat_last_n, len(history))
        use_penalties = last_n > 0 and (p.repeat_penalty != 1.0 or p.presence_penalty != 0.0
                                        or p.frequency_penalty != 0.0)
        if not use_penalties and self._bias_ids is None:
            return x
        x = x.copy()
        if use_penalties:
            recent = np.asarray(history[len(history) - last_n:], dtype=np.int64)
            recent = recent[(recent >= 0) & (recent < self.n_vocab)]
            ids, counts = np.unique(recent, return_counts=True)
            n = counts.astype(np.float32)
            v = x[ids]
            v = np.where(v <= 0, v * p.repeat_penalty, v / p.repeat_penalty)
            x[ids] = v - n * p.frequency_penalty - p.presence_penalty
        if self._bias_ids is not None:
            x[self._bias_ids] += self._bias_values
        return x

    def _greedy(self, x: np.ndarray) -> SampleResult:
        tok = int(np.argmax(x))   # the first maximum: ties go to the lowest id
        if not np.isfinite(x[tok]) and x[tok] < 0:
            raise ValueError("every token has logit -inf (all banned by logit_bias?)")
        if self.params.logprobs is None:
            return SampleResult(tok)
        lse = _log_sum_exp(x)
        top = _core.top_k_indices(x, self.params.logprobs)
        return SampleResult(tok, float(x[tok]) - lse, [(int(i), float(x[i]) - lse) for i in top])

    def _filtered(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Top-k, then top-p, then min-p: the surviving ids and their logits (float64).

        After top-k, top-p renormalises over the k candidates (as llama.cpp does);
        with top-k off it is over the whole vocabulary (C++ bucket selection, no
        sort of the vocabulary). The result is not necessarily sorted.
        """
        p = self.params
        if 0 < p.top_k < self.n_vocab:
            ids = _core.top_k_indices(x, p.top_k)     # best first
            vals = x[ids].astype(np.float64)
            vals_ok = vals > -np.inf
            ids, vals = ids[vals_ok], vals[vals_ok]
            if p.top_p < 1.0 and len(ids):
                cum = np.cumsum(np.exp(vals - vals[0]))
                n_keep = int(np.searchsorted(cum, p.top_p * cum[-1], side="left")) + 1
                ids, vals = ids[:n_keep], vals[:n_keep]
        elif p.top_p < 1.0:
            ids = self._nucleus(x, p.top_p)
            vals = x[ids].astype(np.float64)
        else:
            ids = np.arange(self.n_vocab)
            vals = x.astype(np.float64)
        if len(ids) == 0 or not vals.max() > -np.inf:
            raise ValueError("every token has logit -inf (all banned by logit_bias?)")
        if p.min_p > 0.0:
            keep = vals >= vals.max() + math.log(p.min_p)
            ids, vals = ids[keep], vals[keep]
        return ids, vals

    @staticmethod
    def _nucleus(x: np.ndarray, top_p: float) -> np.ndarray:
        """Top-p over the whole vocabulary: the fewest best ids whose mass reaches top_p.

        The nucleus of a real model is usually small: the best 64 or 512 (C++ top-k)
        are checked against the whole-vocabulary mass first; a flat distribution
        falls back to the C++ bucket selection.
        """
        lse = _log_sum_exp(x)
        for k in (64, 512):
            if k >= len(x):
                break
            ids = _core.top_k_indices(x, k)
            cum = np.cumsum(np.exp(x[ids].astype(np.float64) - lse))
            if cum[-1] >= top_p:
                return ids[: int(np.searchsorted(cum, top_p, side="left")) + 1]
        return _core.top_p_indices(x, top_p)


def _log_sum_exp(x: np.ndarray) -> float:
    """log(sum(exp(x))) accumulated in float64 (float32 exps on the big vectors)."""
    m = float(np.max(x))
    if m == -math.inf:
        return m
    return m + math.log(float(np.exp(x - m).sum(dtype=np.float64)))
