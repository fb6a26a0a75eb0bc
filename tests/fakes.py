"""Small stand-ins for Model / Tokenizer / StreamDecoder / ChatTemplate (LLM unit tests).

FakeModel "knows" one byte string: at position p it predicts byte p+1 of
[BOS] + text + [EOS] with a large logit, but only if the tokens it reads back
from its own paged KV cache for positions 0..p are exactly that prefix;
otherwise it predicts '?'. So a decode loop that feeds wrong positions, a wrong
block table or reuses a stale cache prefix produces visibly wrong text.
"""
from __future__ import annotations

import codecs
import time

import numpy as np

from llamalite.llm import LLM

BOS, EOS = 256, 257
N_VOCAB = 258


class FakeKV:
    def __init__(self, n_blocks: int, block_size: int) -> None:
        self.block_size = block_size
        self.tokens = np.full((n_blocks, block_size), -1, dtype=np.int64)  # [n_blocks, block_size]


class FakeModel:
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

    def new_kv_cache(self, n_blocks: int, block_size: int = 16) -> FakeKV:
        return FakeKV(n_blocks, block_size)

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
    def render(self, messages, add_generation_prompt: bool = True, tools=None) -> str:
        text = "".join(f"<{m['role']}>{m['content']}" + ("<eos>" if m["role"] == "assistant" else "")
                       + "\n" for m in messages)
        return text + ("<assistant>" if add_generation_prompt else "")


def fake_llm(text: str, **kwargs) -> LLM:
    """An LLM over FakeModel(text) and the fake tokenizer, template and decoder."""
    return LLM._from_parts(FakeModel(text, **{k: kwargs.pop(k) for k in ("noise", "peak", "delay")
                                              if k in kwargs}),
                           FakeTokenizer(), FakeChatTemplate(), FakeStreamDecoder, **kwargs)
