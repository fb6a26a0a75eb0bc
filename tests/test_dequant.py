"""dequantize_row against gguf.quants.dequantize: bit-exact for every type.

Every type's dequantization in the core mirrors numpy's float32 operation
order (and the build disables FMA contraction), so the comparison is on the
float32 bit patterns, with no tolerance.
"""
from __future__ import annotations

import numpy as np
import pytest
from gguf import GGMLQuantizationType as T
from gguf import GGML_QUANT_SIZES
from gguf.quants import dequantize
from kernel_data import DEQUANT_TYPES, GGUF_QUANTIZABLE, _FP16_FIELDS, make_weights, random_blocks, real_model_tensors

from llamalite import _core


def core_dequant(qtype: T, raw: np.ndarray, n: int) -> np.ndarray:
    return _core.dequantize(int(qtype), np.ascontiguousarray(raw).view(np.uint8).reshape(-1), n)


def assert_bits_equal(got: np.ndarray, ref: np.ndarray, what: str) -> None:
    ref = np.asarray(ref, dtype=np.float32).reshape(-1)
    assert got.shape == ref.shape, what
    bad = np.flatnonzero(got.view(np.uint32) != ref.view(np.uint32))
    assert bad.size == 0, f"{what}: {bad.size} values differ, first at {bad[0]}: {got[bad[0]]!r} vs {ref[bad[0]]!r}"


def test_type_traits_match_gguf():
    for qtype in list(DEQUANT_TYPES) + [T.Q8_K]:
        tr = _core.type_traits(int(qtype))
        assert tr["name"] == qtype.name
        assert (tr["block_size"], tr["type_size"]) == GGML_QUANT_SIZES[qtype]
    # gguf-py still lists Q8_1 with float32 d and s (40 bytes); ggml's block_q8_1
    # has been two fp16 values + 32 int8 (36 bytes) for years.
    assert (_core.type_traits(int(T.Q8_1))["block_size"], _core.type_traits(int(T.Q8_1))["type_size"]) == (32, 36)
    assert _core.type_traits(int(T.Q8_K))["can_matmul"] is False
    with pytest.raises(ValueError, match="unknown GGML tensor type id 99"):
        _core.type_traits(99)


@pytest.mark.parametrize("qtype", DEQUANT_TYPES, ids=lambda t: t.name)
def test_dequant_matches_gguf(qtype):
    rng = np.random.default_rng(int(qtype))
    k = 512
    raw = make_weights(qtype, 8, k, rng)
    assert_bits_equal(core_dequant(qtype, raw, 8 * k), dequantize(raw, qtype), qtype.name)


@pytest.mark.parametrize("qtype", [t for t in DEQUANT_TYPES if t in _FP16_FIELDS and t in GGUF_QUANTIZABLE],
                         ids=lambda t: t.name)
def test_dequant_random_bits(qtype):
    """Random bytes reach every quant bit pattern that quantize() may not produce."""
    rng = np.random.default_rng(100 + int(qtype))
    raw = random_blocks(qtype, 4, 512, rng)
    assert_bits_equal(core_dequant(qtype, raw, 4 * 512), dequantize(raw, qtype), qtype.name)


@pytest.mark.parametrize("qtype", [T.F16, T.BF16], ids=lambda t: t.name)
def test_dequant_float_every_bit_pattern(qtype):
    """All 65,536 half / bfloat16 patterns: subnormals, infinities, NaN payloads."""
    raw = np.arange(65536, dtype=np.uint16).view(np.uint8)
    assert_bits_equal(core_dequant(qtype, raw, 65536), dequantize(raw.reshape(1, -1), qtype), qtype.name)


def test_dequant_bad_input():
    raw = np.zeros(18, dtype=np.uint8)
    with pytest.raises(ValueError, match="not a multiple of the Q4_0 block size 32"):
        _core.dequantize(int(T.Q4_0), raw, 31)
    with pytest.raises(ValueError, match="need 36 bytes, got 18"):
        _core.dequantize(int(T.Q4_0), raw, 64)
    with pytest.raises(ValueError, match="unknown GGML tensor type id 4"):
        _core.dequantize(4, raw, 32)


@pytest.mark.slow
def test_dequant_every_tensor_of_real_models(real_model_path):
    """Every tensor of both real models, core vs gguf.quants.dequantize, bit for bit."""
    data = np.memmap(real_model_path, dtype=np.uint8, mode="r")
    tensors = real_model_tensors(real_model_path)
    assert tensors
    for name, qtype, off, n_bytes, (rows, row_len) in tensors:
        n_el = rows * row_len
        raw = np.asarray(data[off:off + n_bytes])
        block_size, type_size = GGML_QUANT_SIZES[qtype]
        ref = dequantize(raw.reshape(-1, type_size * 16 if n_el % (16 * block_size) == 0 else type_size), qtype)
        assert_bits_equal(core_dequant(qtype, raw, n_el), ref, f"{real_model_path.name}:{name} ({qtype.name})")
