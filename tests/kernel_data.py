"""Test data for the kernel tests: valid quantized blocks of every type.

Types gguf can quantize are made with `gguf.quants.quantize`; for the others
(K-quants, IQ4_NL, IQ4_XS) random bytes make valid blocks once their fp16 scale
fields are overwritten with finite values of a sensible size.
"""
from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
from gguf import GGMLQuantizationType as T
from gguf import GGML_QUANT_SIZES
from gguf.quants import quantize

# Every type the core dequantizes / multiplies.
DEQUANT_TYPES = [T.F32, T.F16, T.BF16, T.Q4_0, T.Q4_1, T.Q5_0, T.Q5_1, T.Q8_0, T.Q2_K, T.Q3_K,
                 T.Q4_K, T.Q5_K, T.Q6_K, T.IQ4_NL, T.IQ4_XS]
MATMUL_TYPES = DEQUANT_TYPES
# Types gguf.quants can quantize (the rest are built by hand).
GGUF_QUANTIZABLE = {T.F32, T.F16, T.BF16, T.Q4_0, T.Q4_1, T.Q5_0, T.Q5_1, T.Q8_0}

# Byte offsets of the fp16 scale fields inside one block, per hand-built type.
_FP16_FIELDS = {
    T.Q4_0: [0], T.Q4_1: [0, 2], T.Q5_0: [0], T.Q5_1: [0, 2], T.Q8_0: [0], T.IQ4_NL: [0],
    T.Q2_K: [80, 82], T.Q3_K: [108], T.Q4_K: [0, 2], T.Q5_K: [0, 2], T.Q6_K: [208], T.IQ4_XS: [0],
}


def nmse(y: np.ndarray, ref: np.ndarray) -> float:
    """Normalised mean squared error sum((y - ref)^2) / sum(ref^2), in float64."""
    ref = np.asarray(ref, dtype=np.float64)
    return float(((y.astype(np.float64) - ref) ** 2).sum() / (ref ** 2).sum())


def random_blocks(qtype: T, n_rows: int, k: int, rng: np.random.Generator) -> np.ndarray:
    """uint8 [n_rows, row_bytes]: random bytes with finite fp16 scales (any block type)."""
    block_size, type_size = GGML_QUANT_SIZES[qtype]
    nb = n_rows * k // block_size
    raw = rng.integers(0, 256, size=(nb, type_size), dtype=np.uint8)
    for off in _FP16_FIELDS[qtype]:
        scale = rng.uniform(0.002, 0.05, size=nb) * rng.choice([-1.0, 1.0], size=nb)
        raw[:, off:off + 2] = scale.astype(np.float16).view(np.uint8).reshape(nb, 2)
    return raw.reshape(n_rows, -1)


def make_weights(qtype: T, n_rows: int, k: int, rng: np.random.Generator) -> np.ndarray:
    """uint8 [n_rows, row_bytes] of valid weights of qtype."""
    if qtype in GGUF_QUANTIZABLE:
        w = rng.standard_normal((n_rows, k)).astype(np.float32)
        q = quantize(w, qtype)
        return np.ascontiguousarray(q).view(np.uint8).reshape(n_rows, -1)
    return random_blocks(qtype, n_rows, k, rng)


@functools.lru_cache(maxsize=None)
def real_model_tensors(path: Path) -> tuple:
    """(name, type, absolute offset, n_bytes, shape [rows, row_len]) of every tensor of a
    GGUF file, read once per pytest run with gguf.GGUFReader (the oracle, slow)."""
    from gguf import GGUFReader
    reader = GGUFReader(str(path))
    out = []
    for t in reader.tensors:
        dims = [int(d) for d in t.shape]  # ggml order: row length first
        row_len = dims[0]
        out.append((t.name, T(int(t.tensor_type)), int(t.data_offset), int(t.n_bytes),
                    (int(t.n_elements) // row_len, row_len)))
    return tuple(out)
