"""Test doubles with the real interfaces, for the engine, the LLM API and the server.

Two fake models, both of which see the token history only through the paged KV cache
they are handed, so a wrong position, block table or stale prefix shows in their output:

- ScriptModel "knows" one byte string: at position p it predicts byte p+1 of
  [BOS] + text + [EOS] with a large logit, but only if the tokens it reads back for
  positions 0..p are exactly that prefix; otherwise it predicts '?'.
- HashModel's logits are a hash of the history it reads back; `reference_greedy`
  computes the right greedy answer with no KV cache at all.

Plus a byte tokenizer (BOS 256, EOS 257), its stream decoder, a chat template, a greedy
sampler, and `fake_llm` / `fake_engine` / `fake_backend` to put them together.
"""
from __future__ import annotations

import codecs
import hashlib
import re
import time
from typing import NamedTuple

import numpy as np

from llamalite.llm import LLM
from llamalite.sampling import SamplingParams

N_VOCAB = 260
BOS, EOS = 256, 257


# --- ScriptModel ------------------------------------------------------------

class ScriptKV:
    def __init__(self, n_blocks: int, block_size: int) -> None:
        self.block_size = block_size
        self.tokens = np.full((n_blocks, block_size), -1, dtype=np.int64)  # [n_blocks, block_size]


class ScriptModel:
    n_vocab = N_VOCAB
    arch = "fake"

    def __init__(self, text: str, noise: float = 1.0, peak: float = 8.0, delay: float = 0.0) -> None:
        # delay: seconds each forward call sleeps (a step that takes real time)
        self.delay = delay
        # "<eos>" in the text is an EOS the model emits there (end of a chat turn).
        self.script = [*FakeTokenizer().tokenize(text, parse_special=True), EOS]
        rng = np.random.default_rng(0)
        self.noise = (noise * rng.standard_normal((len(self.script) + 4096, N_VOCAB))).astype(np.float32)
        self.peak = peak
        self.calls: list[int] = []          # number of tokens of each forward call

    def new_kv_cache(self, n_blocks: int, block_size: int = 16) -> ScriptKV:
        return ScriptKV(n_blocks, block_size)

    def forward(self, kv, tokens, positions, seq_ids, block_tables, logit_rows):
        for arr in (tokens, positions, seq_ids, block_tables, logit_rows):
            assert arr.dtype == np.int32
        assert len(tokens) == len(positions) == len(seq_ids)
        self.calls.append(len(tokens))
        if self.delay:
            time.sleep(self.delay)
        bs = kv.block_size
        for tok, pos, seq in zip(tokens, positions, seq_ids):
            kv.tokens[block_tables[seq, pos // bs], pos % bs] = tok
        out = np.empty((len(logit_rows), N_VOCAB), dtype=np.float32)
        for i, row in enumerate(logit_rows):
            pos, seq = int(positions[row]), int(seq_ids[row])
            prefix = [int(kv.tokens[block_tables[seq, p // bs], p % bs]) for p in range(pos + 1)]
            ok = prefix == self.script[: pos + 1] and pos + 1 < len(self.script)
            target = self.script[pos + 1] if ok else ord("?")
            out[i] = self.noise[pos]
            out[i, target] += self.peak
        return out


# --- HashModel --------------------------------------------------------------

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


class HashModel:
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


# --- tokenizer, decoder, template, sampler ----------------------------------

class FakeTokenizer:
    """Bytes as tokens, BOS = 256, EOS = 257 (the text "<eos>" with parse_special)."""

    n_vocab = N_VOCAB
    bos_id, eos_id = BOS, EOS
    eog_ids = frozenset({EOS})

    def tokenize(self, text: str, add_special: bool = True, parse_special: bool = False) -> list[int]:
        parts = text.split("<eos>") if parse_special else [text]
        ids = list(parts[0].encode("utf-8"))
        for part in parts[1:]:
            ids += [EOS, *part.encode("utf-8")]
        return [BOS, *ids] if add_special else ids

    def tokenize_parts(self, parts, add_special: bool = True) -> list[int]:
        """(text, parse_special) pieces tokenized one after another (chat_prompt_ids)."""
        ids = [BOS] if add_special else []
        for text, special in parts:
            ids += self.tokenize(text, add_special=False, parse_special=special)
        return ids

    def hidden_special_spans(self, text: str) -> list[tuple[int, int, int]]:
        """(start, end, id) of the control-token texts ("<eos>") in text."""
        return [(m.start(), m.end(), EOS) for m in re.finditer("<eos>", text)]

    def detokenize(self, ids) -> str:
        return bytes(i for i in ids if i < 256).decode("utf-8", errors="replace")

    def token_bytes(self, tid: int) -> bytes:
        return bytes([tid]) if tid < 256 else b""


class FakeStreamDecoder:
    def __init__(self, tokenizer: FakeTokenizer) -> None:
        self.dec = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def push(self, tid: int) -> str:
        return self.dec.decode(bytes([tid])) if tid < 256 else ""

    def flush(self) -> str:
        return self.dec.decode(b"", final=True)


class FakeChatTemplate:
    source = "{# a stand-in: <role>content lines #}"
    bos_token = eos_token = ""

    def render(self, messages, add_generation_prompt: bool = True, tools=None) -> str:
        text = "".join(f"<{m['role']}>{m['content']}" + ("<eos>" if m["role"] == "assistant" else "")
                       + "\n" for m in messages)
        return text + ("<assistant>" if add_generation_prompt else "")


def FakeParams(**overrides) -> SamplingParams:
    """The real SamplingParams with greedy, filter-free defaults for the fake engine."""
    fields = dict(temperature=0.0, top_p=1.0, min_p=0.0, max_tokens=16)
    fields.update(overrides)
    return SamplingParams(**fields)


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
    model = kw.pop("model", None) or HashModel()
    kw.setdefault("sampler_factory", GreedySampler)
    return Engine(model, FakeTokenizer(), decoder_factory=FakeStreamDecoder, **kw)


def fake_llm(text: str, **kwargs) -> LLM:
    """An LLM over ScriptModel(text) and the fake tokenizer, template and decoder."""
    model_kw = {k: kwargs.pop(k) for k in ("noise", "peak", "delay") if k in kwargs}
    return LLM._from_parts(ScriptModel(text, **model_kw), FakeTokenizer(), FakeChatTemplate(),
                           FakeStreamDecoder, **kwargs)


def fake_backend(settings, model=None, name: str = "fake-model", tokenizer=None, template=None,
                 **llm_kw):
    """A server Backend over an LLM of `model` (default HashModel()) and the fakes."""
    from llamalite.server.backend import Backend
    llm = LLM._from_parts(model or HashModel(), tokenizer or FakeTokenizer(),
                          template or FakeChatTemplate(),
                          FakeStreamDecoder, n_ctx=settings.ctx_size,
                          n_parallel=settings.n_parallel, max_queue=settings.max_queue,
                          max_batch_tokens=llm_kw.pop("max_batch_tokens",
                                                      settings.max_batch_tokens),
                          name=name, **llm_kw)
    return Backend(llm=llm, name=name, aliases=frozenset({name + ".gguf"}),
                   info={"arch": "fake", "n_ctx": llm.n_ctx})
