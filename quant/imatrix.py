"""Collect an importance matrix with llamalite's own forward pass (`llamalite imatrix`).

As llama-imatrix does: the text is tokenized (BOS when the vocabulary asks for it),
cut into chunks of `chunk_size` tokens (the rest is dropped), and each chunk runs
through the model from an empty cache with its first token replaced by BOS. For every
layer matmul weight the core adds up, per input column, the squares of the float
activations that enter it, and counts the rows (tokens); for the 3-D expert tensors
(ffn_{gate,up,down}_exps) it does so per expert, over the tokens routed to that expert
(an expert no token chose keeps count 0). The output weight is not collected
(llama-imatrix's default). The result is written in llama.cpp's GGUF imatrix
format (or the legacy .dat format) and read back by `llamalite quantize --imatrix`.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np


class ImatrixInputError(ValueError):
    """The text or the options cannot give an importance matrix."""


@dataclass
class Collected:
    sums: dict[str, np.ndarray]   # name -> float64 [n_mat, n_per_row]: sum of x^2 over tokens
    counts: dict[str, np.ndarray] # name -> int64 [n_mat]: tokens seen (n_mat: experts, or 1)
    n_chunks: int
    chunk_size: int


def chunks_of(tokens: list[int], chunk_size: int, n_chunks: Optional[int],
              bos_id: Optional[int]) -> list[list[int]]:
    """The chunks llama-imatrix runs: whole chunks only, first token BOS when set."""
    if chunk_size < 1:
        raise ImatrixInputError(f"--chunk-size must be at least 1, got {chunk_size}")
    n_max = len(tokens) // chunk_size
    if n_max == 0:
        raise ImatrixInputError(f"the text has {len(tokens)} tokens, fewer than one chunk of "
                                f"{chunk_size}; give a longer text or a smaller --chunk-size")
    n = n_max if n_chunks is None or n_chunks < 0 else min(n_chunks, n_max)
    out = []
    for i in range(n):
        c = list(tokens[i * chunk_size:(i + 1) * chunk_size])
        if bos_id is not None:
            c[0] = bos_id
        out.append(c)
    return out


def collect(model_path: str | os.PathLike, text: str, *, chunk_size: int = 512,
            n_chunks: Optional[int] = None, n_threads: Optional[int] = None,
            progress: Optional[Callable[[int, int], None]] = None,
            precise: bool = False) -> Collected:
    """Run the chunks through the model and return the per-column sums of x^2.

    precise: the model's precise mode (float32 activations in every matmul and a float32
    KV cache, for checking against float math); by default the activations entering each
    quantized matmul are rounded to 8-bit blocks and the cache is float16, as in llama.cpp."""
    from llamalite.model import Model
    from llamalite.tokenizer import Tokenizer

    model = Model.load(model_path, n_threads=n_threads, precise=precise)
    tok = Tokenizer.from_metadata(model.gguf.metadata)
    tokens = tok.tokenize(text, add_special=True)
    chunks = chunks_of(tokens, chunk_size, n_chunks, tok.bos_id if tok.add_bos else None)
    block = 16
    n_blocks = -(-chunk_size // block)
    native = model._native
    native.set_act_stats(True)
    try:
        for i, c in enumerate(chunks):
            kv = model.new_kv_cache(n_blocks, block)
            n = len(c)
            model.forward(kv, np.asarray(c, dtype=np.int32), np.arange(n, dtype=np.int32),
                          np.zeros(n, dtype=np.int32),
                          np.arange(n_blocks, dtype=np.int32).reshape(1, -1),
                          np.zeros(0, dtype=np.int32))
            if progress is not None:
                progress(i + 1, len(chunks))
        stats = native.act_stats()
    finally:
        native.set_act_stats(False)
    sums = {name: np.asarray(s) for name, (s, _) in stats.items()}
    counts = {name: np.asarray(n, dtype=np.int64) for name, (_, n) in stats.items()}
    return Collected(sums, counts, len(chunks), chunk_size)
