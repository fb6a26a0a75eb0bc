"""Test doubles with the real interfaces: a model whose logits are a hash of the token
history it reads back *through its KV block table*, a byte tokenizer, a greedy sampler.

Because FakeModel only sees the history through the blocks it was handed, any mistake in
block tables, prefix sharing or eviction changes its output; `reference_greedy` computes
the right answer with no KV cache at all.
"""
from __future__ import annotations

import codecs
import hashlib
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

from llamalite.sampling import SamplingParams

N_VOCAB = 260
BOS, EOS = 256, 257
PRINTABLE = np.arange(32, 127)


def fake_logits(history: list[int], eos_logit: float = -1e9) -> np.ndarray:
    """Deterministic logits [N_VOCAB] from a token history: printable ASCII only (+ EOS)."""
    digest = hashlib.blake2b(np.asarray(history, dtype=np.int64).tobytes(), digest_size=8).digest()
    rng = np.random.default_rng(int.from_bytes(digest, "little"))
    out = np.full(N_VOCAB, -1e9, dtype=np.float32)
    out[PRINTABLE] = rng.standard_normal(len(PRINTABLE)).astype(np.float32)
    out[EOS] = eos_logit
    return out


class FakeKV:
    """K/V stand-in: each slot stores the token id (and position) written there."""

    def __init__(self, n_blocks: int, block_size: int) -> None:
        self.block_size = block_size
        self.ids = np.full((n_blocks, block_size), -1, dtype=np.int64)   # [n_blocks, bs]
        self.pos = np.full((n_blocks, block_size), -1, dtype=np.int64)   # [n_blocks, bs]


class FakeModel:
    """Same forward signature as llamalite.model.Model."""

    arch = "fake"

    def __init__(self, n_vocab: int = N_VOCAB, eos_logit: float = -1e9,
                 n_ctx_train: int = 1 << 20, delay: float = 0.0) -> None:
        self.n_vocab = n_vocab
        self.n_ctx_train = n_ctx_train
        self.eos_logit = eos_logit
        self.delay = delay
        self.batch_sizes: list[int] = []      # tokens per forward call
        self.computed_tokens = 0

    def new_kv_cache(self, n_blocks: int, block_size: int = 16) -> FakeKV:
        return FakeKV(n_blocks, block_size)

    def forward(self, kv, tokens, positions, seq_ids, block_tables, logit_rows):
        import time
        for a in (tokens, positions, seq_ids, block_tables, logit_rows):
            assert a.dtype == np.int32, a.dtype
        assert tokens.shape == positions.shape == seq_ids.shape
        bs = kv.block_size
        self.batch_sizes.append(len(tokens))
        self.computed_tokens += len(tokens)
        for t, p, s in zip(tokens, positions, seq_ids):
            b = block_tables[s][p // bs]
            kv.ids[b, p % bs] = t
            kv.pos[b, p % bs] = p
        out = np.empty((len(logit_rows), self.n_vocab), dtype=np.float32)
        for r, i in enumerate(logit_rows):
            s, p = seq_ids[i], positions[i]
            hist = []
            for q in range(p + 1):
                b = block_tables[s][q // bs]
                assert kv.pos[b, q % bs] == q, f"slot for position {q} holds {kv.pos[b, q % bs]}"
                hist.append(int(kv.ids[b, q % bs]))
            out[r] = fake_logits(hist, self.eos_logit)
        if self.delay:
            time.sleep(self.delay)
        return out


def reference_greedy(prompt: list[int], n: int, eos_logit: float = -1e9) -> list[int]:
    """What greedy decoding must produce, computed without any KV cache."""
    hist = list(prompt)
    out = []
    for _ in range(n):
        t = int(np.argmax(fake_logits(hist, eos_logit)))
        out.append(t)
        if t == EOS:
            break
        hist.append(t)
    return out


class FakeTokenizer:
    """Bytes as tokens 0..255, BOS 256, EOS 257."""

    n_vocab = N_VOCAB
    eog_ids = frozenset({EOS})
    bos_id = BOS

    def tokenize(self, text: str, add_special: bool = True, parse_special: bool = False) -> list[int]:
        return ([BOS] if add_special else []) + list(text.encode("utf-8"))

    def detokenize(self, ids) -> str:
        return bytes(i for i in ids if i < 256).decode("utf-8", errors="replace")


class FakeStreamDecoder:
    def __init__(self, tok: FakeTokenizer) -> None:
        self._dec = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def push(self, token: int) -> str:
        return self._dec.decode(bytes([token])) if token < 256 else ""

    def flush(self) -> str:
        return self._dec.decode(b"", final=True)


class FakeTemplate:
    def render(self, messages, add_generation_prompt: bool = True, tools=None) -> str:
        text = "".join(f"<{m['role']}>{m['content']}\n" for m in messages)
        return text + ("<assistant>" if add_generation_prompt else "")


def FakeParams(**overrides) -> SamplingParams:
    """The real SamplingParams with greedy, filter-free defaults for the fake engine."""
    fields = dict(temperature=0.0, top_p=1.0, min_p=0.0, max_tokens=16)
    fields.update(overrides)
    return SamplingParams(**fields)

    def validate(self, n_vocab: int) -> None:
        for t in (self.logit_bias or {}):
            if not 0 <= int(t) < n_vocab:
                raise ValueError(f"logit_bias token id {t} is out of range [0, {n_vocab})")


class SampleResult(NamedTuple):
    token: int
    logprob: float
    top_logprobs: list


class GreedySampler:
    """Greedy stand-in for llamalite.sampling.Sampler (honours logit_bias)."""

    def __init__(self, params: SamplingParams, n_vocab: int) -> None:
        self.params = params

    def sample(self, logits_row, history) -> SampleResult:
        x = np.asarray(logits_row, dtype=np.float64).copy()
        for t, b in (self.params.logit_bias or {}).items():
            x[int(t)] += b
        t = int(np.argmax(x))
        lse = np.log(np.sum(np.exp(x - x.max()))) + x.max()
        k = self.params.logprobs or 0
        top = [(int(i), float(x[i] - lse)) for i in np.argsort(-x)[:k]]
        return SampleResult(t, float(x[t] - lse), top)


def fake_engine(**kw):
    """An Engine over the fakes (started); greedy stand-in sampler unless sampler_factory=None
    (the real llamalite.sampling.Sampler)."""
    from llamalite.engine import Engine
    model = kw.pop("model", None) or FakeModel()
    kw.setdefault("sampler_factory", GreedySampler)
    return Engine(model, FakeTokenizer(), decoder_factory=FakeStreamDecoder, **kw)
