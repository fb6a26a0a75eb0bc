"""The block quantizers (_core.quantize_rows) against llama.cpp's bytes.

tests/data/quant_vectors.npz holds llama.cpp's ggml_quantize_chunk output for every type
llamalite makes, on small self-contained inputs, with and without an importance matrix
(tests/tools/record_quant_vectors.py made it with the peer). The C++ quantizers and the
numpy reference (llamalite.quant.reference) must give the same bytes; gguf.quants is a
third oracle for the types it can quantize and dequantizes every type for round trips.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from gguf import GGMLQuantizationType as GT
from gguf import quants as gq

from llamalite import _core
from llamalite.quant import reference

DATA = Path(__file__).parent / "data" / "quant_vectors.npz"
NAMES = ["F16", "BF16", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K",
         "IQ4_NL", "IQ4_XS"]
TYPE_ID = {name: int(GT[name]) for name in NAMES}


@pytest.fixture(scope="module")
def vectors() -> dict[str, np.ndarray]:
    with np.load(DATA) as d:
        return {k: d[k] for k in d.files}


def recorded(vectors, name: str):
    """[(case, imatrix name, input, imatrix or None, llama.cpp bytes)] for one type."""
    out = []
    for key, want in vectors.items():
        parts = key.split("/")
        if parts[0] != "out" or parts[1] != name:
            continue
        case, iname = parts[2], parts[3]
        im = None if iname == "none" else vectors[f"im/{iname}"]
        out.append((case, iname, vectors[f"in/{case}"], im, want))
    return out


def test_quantize_types_are_the_agreed_set():
    assert sorted(_core.quantize_types()) == sorted(TYPE_ID.values())


@pytest.mark.parametrize("isa", _core.supported_isas(), indirect=True)
@pytest.mark.parametrize("name", NAMES)
def test_core_matches_llama_cpp(vectors, name, isa):
    """Every instruction set (the scalar code and the SIMD lanes) gives llama.cpp's bytes."""
    cases = recorded(vectors, name)
    assert len(cases) >= 9, "every type has its recorded cases"
    for case, iname, x, im, want in cases:
        got = _core.quantize_rows(TYPE_ID[name], x, im)
        assert got.shape == want.shape
        bad = np.flatnonzero((got != want).any(axis=1))
        assert bad.size == 0, f"{name} {case} imatrix={iname}: rows {bad.tolist()} differ from llama.cpp"


@pytest.mark.parametrize("name", NAMES)
def test_reference_matches_llama_cpp(vectors, name):
    # Rows are independent: all cases of one imatrix go through the reference at once.
    by_im: dict[str, list] = {}
    for case, iname, x, im, want in recorded(vectors, name):
        by_im.setdefault(iname, []).append((case, x, im, want))
    for iname, items in by_im.items():
        x = np.concatenate([it[1] for it in items])
        want = np.concatenate([it[3] for it in items])
        got = reference.quantize(TYPE_ID[name], x, items[0][2])
        assert got.shape == want.shape
        bad = np.flatnonzero((got != want).any(axis=1))
        assert bad.size == 0, f"{name} imatrix={iname}: reference rows {bad.tolist()} differ from llama.cpp"


@pytest.mark.parametrize("name", ["BF16", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0"])
def test_gguf_quants_agrees(vectors, name):
    """gguf-py's own quantizers (llama.cpp's reference path, no imatrix) give the same bytes."""
    for case, iname, x, im, want in recorded(vectors, name):
        if im is None:
            with np.errstate(all="ignore"):   # gguf-py divides by zero on constant blocks
                theirs = gq.quantize(x, GT[name]).view(np.uint8).reshape(want.shape)
            assert np.array_equal(theirs, want), f"{name} {case}"


def random_rows(rows: int, n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((rows, n)) * 0.05
    x[rng.random((rows, n)) < 0.005] *= 20
    return x.astype(np.float32)


@pytest.mark.parametrize("name", NAMES)
def test_threads_give_the_same_bytes(name):
    x = random_rows(37, 512, 5)
    im = np.random.default_rng(6).random(512).astype(np.float32)
    for imx in (None, im):
        one = _core.quantize_rows(TYPE_ID[name], x, imx, n_threads=1)
        for nt in (2, 3):
            assert np.array_equal(_core.quantize_rows(TYPE_ID[name], x, imx, n_threads=nt), one), (name, nt)


# Normalized mean squared error of a round trip on random_rows (outliers included):
# the measured value (reference path) times about 1.3.
NMSE_BOUND = {
    "F16": 5e-8, "BF16": 3e-6, "Q4_0": 0.026, "Q4_1": 0.014, "Q5_0": 8.7e-3, "Q5_1": 3.2e-3, "Q8_0": 1.5e-4,
    "Q2_K": 0.083, "Q3_K": 0.031, "Q4_K": 0.012, "Q5_K": 3e-3, "Q6_K": 1.15e-3, "IQ4_NL": 0.018, "IQ4_XS": 0.018,
}


@pytest.mark.parametrize("name", NAMES)
def test_round_trip_is_close(name):
    x = random_rows(16, 1024, 9)
    im = (np.random.default_rng(10).random(1024) + 0.1).astype(np.float32)
    for imx in (None, im):
        q = _core.quantize_rows(TYPE_ID[name], x, imx, n_threads=2)
        theirs = gq.dequantize(q, GT[name]).reshape(x.shape)
        ours = _core.dequantize(TYPE_ID[name], q.reshape(-1), x.size).reshape(x.shape)
        assert np.array_equal(ours, theirs.astype(np.float32))
        nmse = float(((theirs - x) ** 2).mean() / (x ** 2).mean())
        assert nmse < NMSE_BOUND[name], (name, imx is not None, nmse)


def test_imatrix_changes_the_result_and_is_ignored_where_llama_cpp_ignores_it():
    x = random_rows(4, 512, 11)
    im = np.random.default_rng(12).random(512).astype(np.float32) ** 4
    for name in ("Q4_K", "Q6_K", "IQ4_XS", "Q4_0"):
        assert not np.array_equal(_core.quantize_rows(TYPE_ID[name], x), _core.quantize_rows(TYPE_ID[name], x, im))
    for name in ("F16", "BF16", "Q8_0"):
        assert np.array_equal(_core.quantize_rows(TYPE_ID[name], x), _core.quantize_rows(TYPE_ID[name], x, im))


def test_empty_input_gives_no_rows():
    out = _core.quantize_rows(TYPE_ID["Q4_K"], np.zeros((0, 256), np.float32))
    assert out.shape == (0, 144) and out.dtype == np.uint8


@pytest.mark.parametrize("args, match", [
    ((0, np.zeros((1, 32), np.float32)), "cannot produce type 0 \\(F32\\)"),
    ((15, np.zeros((1, 256), np.float32)), "cannot produce type 15 \\(Q8_K\\)"),
    ((99, np.zeros((1, 32), np.float32)), "cannot produce type 99"),
    ((12, np.zeros((1, 300), np.float32)), "Q4_K needs rows of a positive multiple of 256 values, got 300"),
    ((2, np.zeros((1, 48), np.float32)), "multiple of 32 values, got 48"),
    ((2, np.zeros((1, 64), np.float64)), "float32"),
    ((2, np.zeros((1, 64), np.float16)), "float32"),
    ((2, np.zeros(64, np.float32)), "2-D"),
    ((2, np.zeros((64, 64), np.float32)[:, ::2]), "C-contiguous"),
    ((2, np.zeros((2, 64), np.float32), np.ones(32, np.float32)), "imatrix must hold one weight per column: 1-D of 64"),
    ((2, np.zeros((2, 64), np.float32), np.ones((1, 64), np.float32)), "imatrix must hold one weight per column"),
])
def test_bad_input_is_a_clear_error(args, match):
    with pytest.raises(ValueError, match=match):
        _core.quantize_rows(*args)


def test_bad_thread_count():
    with pytest.raises(ValueError, match="n_threads"):
        _core.quantize_rows(2, np.zeros((1, 32), np.float32), n_threads=0)


def test_reference_refuses_what_it_cannot_make():
    with pytest.raises(ValueError, match="no reference quantizer for type 15"):
        reference.quantize(15, np.zeros((1, 256), np.float32))
    with pytest.raises(ValueError, match="multiple of 256"):
        reference.quantize(12, np.zeros((1, 100), np.float32))


@pytest.mark.parametrize("isa", _core.supported_isas(), indirect=True)
def test_rows_whose_blocks_do_not_fill_the_vector_lanes(isa):
    """11 blocks of 32 a row: the SIMD searches take 8 blocks at a time, the rest one by one."""
    x = random_rows(6, 32 * 11, 13)
    im = np.random.default_rng(14).random(32 * 11).astype(np.float32)
    for name in ("Q4_0", "Q4_1", "Q5_0", "Q5_1", "IQ4_NL"):
        for imx in (None, im):
            got = _core.quantize_rows(TYPE_ID[name], x, imx)
            assert np.array_equal(got, reference.quantize(TYPE_ID[name], x, imx)), (name, imx is not None)


def stored_rows(x: np.ndarray, src: str) -> tuple[np.ndarray, np.ndarray]:
    """x as the rows a GGUF file of type src stores (uint8) and the float32 values they
    hold, converted by numpy (F16, BF16) or gguf.quants (the quantized types)."""
    if src == "F32":
        return x.view(np.uint8), x
    if src == "F16":
        h = x.astype(np.float16)
        return h.view(np.uint8), h.astype(np.float32)
    if src == "BF16":
        b = (x.view(np.uint32) >> 16).astype(np.uint16)
        return b.view(np.uint8), (b.astype(np.uint32) << 16).view(np.float32)
    q = _core.quantize_rows(int(GT[src]), x)
    return q, gq.dequantize(q, GT[src]).reshape(x.shape).astype(np.float32)


@pytest.mark.parametrize("isa", _core.supported_isas(), indirect=True)
@pytest.mark.parametrize("src", ["F32", "F16", "BF16", "Q8_0", "Q4_K", "Q6_K"])
def test_stored_rows_give_the_bytes_of_their_float_values(src, isa):
    """src_type: the worker threads convert each stored row, then quantize it; the bytes
    are those of quantizing the independently converted float32 values."""
    x = random_rows(13, 512, 15)
    x[0, :9] = [np.inf, -np.inf, np.nan, 6e-8, -6e-8, 1e-40, 0.0, -0.0, 65504.0]
    if src not in ("F32", "F16", "BF16"):
        x = np.nan_to_num(x, nan=0.0, posinf=1.0, neginf=-1.0)
    raw, values = stored_rows(x, src)
    im = (np.random.default_rng(16).random(512) + 0.1).astype(np.float32)
    for name in ("F16", "BF16", "Q8_0", "Q4_K", "IQ4_XS"):
        for imx in (None, im):
            want = _core.quantize_rows(TYPE_ID[name], values, imx)
            for nt in (1, 2):
                got = _core.quantize_rows(TYPE_ID[name], raw, imx, n_threads=nt, src_type=int(GT[src]))
                assert np.array_equal(got, want), (src, name, imx is not None, nt)


@pytest.mark.parametrize("args, kwargs, match", [
    ((2, np.zeros((1, 64), np.uint8)), {"src_type": 15}, "cannot read src_type 15 \\(Q8_K\\)"),
    ((2, np.zeros((1, 64), np.uint8)), {"src_type": 99}, "cannot read src_type 99"),
    ((2, np.zeros((1, 64), np.float32)), {"src_type": 1}, "with src_type F16, src must be a uint8 array"),
    ((2, np.zeros((1, 63), np.uint8)), {"src_type": 1}, "rows of F16 are whole blocks of 2 bytes, got 63"),
    ((12, np.zeros((1, 68), np.uint8)), {"src_type": 8}, "Q4_K needs rows of a positive multiple of 256 values, got 64"),
])
def test_bad_stored_rows_are_a_clear_error(args, kwargs, match):
    with pytest.raises(ValueError, match=match):
        _core.quantize_rows(*args, **kwargs)


@pytest.mark.parametrize("isa", _core.supported_isas(), indirect=True)
def test_q8_0_scales_at_the_ends_of_float16(isa):
    """Block scales that are float16 subnormals, round to zero, or overflow to infinity
    give the numpy reference's bytes (the SIMD path converts scales with F16C)."""
    x = np.zeros((6, 64), np.float32)
    x[0] = np.linspace(-1e-6, 1e-6, 64)      # subnormal scales
    x[1] = np.linspace(-1e-10, 1e-10, 64)    # scales that round to zero
    x[2] = np.linspace(-1e7, 1e7, 64)        # scales above 65504: infinity
    x[3] = np.linspace(-8.3e6, 8.3e6, 64)    # scales near the largest float16
    x[4, :32] = 3.0
    x[4, 32:] = -1e-30
    x[5] = np.random.default_rng(17).standard_normal(64) * 2.0 ** np.arange(-24, 40, 1)
    assert np.array_equal(_core.quantize_rows(TYPE_ID["Q8_0"], x), reference.quantize(TYPE_ID["Q8_0"], x))
