"""matmul for every weight type under every ISA the machine supports.

Tolerances (normalised mean squared error, sum((Y - R)^2) / sum(R^2)):
- against a float64 reference (dequantized W times X): activations are
  rounded to 8 bits per value (scale amax/127 per block), which alone gives an
  NMSE around 1e-4 on Gaussian data; we allow 1e-3 for the quantized types, and
  1e-10 for F32/F16/BF16 weights (float32 accumulation only).
- SIMD against the generic kernel: both see the same quantized activations and
  the same integer block sums; only the float32 accumulation order differs, so
  NMSE < 1e-10.
Batch invariance is exact: one activation row gives the same bits whatever M
and the thread count are (within one ISA).
"""
from __future__ import annotations

import numpy as np
import pytest
from gguf import GGMLQuantizationType as T
from gguf.quants import dequantize
from kernel_data import MATMUL_TYPES, make_weights, nmse

from llamalite import _core

ISAS = _core.supported_isas()
FLOAT_TYPES = {T.F32, T.F16, T.BF16}
N, K = 40, 512


def _case(qtype: T):
    rng = np.random.default_rng(1000 + int(qtype))
    W = make_weights(qtype, N, K, rng)
    X = rng.standard_normal((512, K)).astype(np.float32)
    Wf = dequantize(W, qtype).reshape(N, K).astype(np.float64)
    return W, X, Wf


@pytest.mark.parametrize("isa", ISAS, indirect=True)
@pytest.mark.parametrize("qtype", MATMUL_TYPES, ids=lambda t: t.name)
def test_matmul_vs_float64(qtype, isa):
    W, X, Wf = _case(qtype)
    tol = 1e-10 if qtype in FLOAT_TYPES else 1e-3
    for M in (1, 2, 7, 32, 512):
        Y = _core.matmul(int(qtype), W, X[:M], 2)
        assert Y.shape == (M, N) and Y.dtype == np.float32
        err = nmse(Y, X[:M].astype(np.float64) @ Wf.T)
        assert err < tol, f"{qtype.name} {isa} M={M}: NMSE {err:.3g} >= {tol}"


@pytest.mark.parametrize("isa", [i for i in ISAS if i != "generic"], indirect=True)
@pytest.mark.parametrize("qtype", MATMUL_TYPES, ids=lambda t: t.name)
def test_simd_matches_generic(qtype, isa):
    W, X, _ = _case(qtype)
    Y = _core.matmul(int(qtype), W, X[:64], 2)
    _core.set_isa("generic")
    Yg = _core.matmul(int(qtype), W, X[:64], 2)
    err = nmse(Y, Yg.astype(np.float64))
    assert err < 1e-10, f"{qtype.name} {isa} vs generic: NMSE {err:.3g}"


@pytest.mark.parametrize("isa", ISAS, indirect=True)
@pytest.mark.parametrize("qtype", MATMUL_TYPES, ids=lambda t: t.name)
def test_batch_invariance(qtype, isa):
    """Row i of Y is bit-identical for every M, every row offset and thread count."""
    W, X, _ = _case(qtype)
    full = _core.matmul(int(qtype), W, X[:37], 2)
    for n_threads in (1, 2, 3):
        for lo, hi in ((0, 1), (5, 6), (3, 10), (0, 37), (1, 33)):
            part = _core.matmul(int(qtype), W, X[lo:hi], n_threads)
            assert np.array_equal(part.view(np.uint32), full[lo:hi].view(np.uint32)), \
                f"{qtype.name} {isa}: rows {lo}:{hi} with {n_threads} threads differ from M=37"
    # Different N (another split of the weight rows) must not change a column either.
    part = _core.matmul(int(qtype), W[3:29], X[:37], 2)
    assert np.array_equal(part.view(np.uint32), full[:, 3:29].view(np.uint32))


def test_matmul_bad_input():
    W = np.zeros((4, 18 * 2), dtype=np.uint8)
    with pytest.raises(ValueError, match="W rows have 36 bytes but K = 32 values of Q4_0 take 18"):
        _core.matmul(int(T.Q4_0), W, np.zeros((1, 32), np.float32))
    with pytest.raises(ValueError, match="not a positive multiple of the Q4_0 block size"):
        _core.matmul(int(T.Q4_0), W, np.zeros((1, 33), np.float32))
    with pytest.raises(ValueError, match="Q8_K cannot be a weight type"):
        _core.matmul(int(T.Q8_K), W, np.zeros((1, 256), np.float32))
    with pytest.raises(ValueError, match="n_threads must be between 1 and 1024"):
        _core.matmul(int(T.Q4_0), W, np.zeros((1, 64), np.float32), 0)
    with pytest.raises(ValueError, match="2-D"):
        _core.matmul(int(T.Q4_0), W, np.zeros(64, np.float32))


@pytest.mark.parametrize("isa", ISAS, indirect=True)
@pytest.mark.parametrize("qtype", [T.F32, T.F16, T.BF16], ids=lambda t: t.name)
def test_float_weights_odd_k(qtype, isa):
    """Float weights take any K: the vector loop's scalar tail must be right."""
    rng = np.random.default_rng(7)
    k = 8 * 12 + 5
    W = make_weights(qtype, 9, k, rng)
    X = rng.standard_normal((5, k)).astype(np.float32)
    ref = X.astype(np.float64) @ dequantize(W, qtype).reshape(9, k).astype(np.float64).T
    assert nmse(_core.matmul(int(qtype), W, X, 2), ref) < 1e-10


def _numpy_q8(x: np.ndarray, block: int):
    """Reference activation quantization: d = amax/127, q = rint(x * (1/d)), float32 throughout."""
    xb = x.reshape(-1, block)
    d = (np.abs(xb).max(axis=1) / np.float32(127)).astype(np.float32)
    with np.errstate(divide="ignore"):
        inv = np.where(d != 0, np.float32(1) / d, np.float32(0)).astype(np.float32)
    q = np.rint(xb * inv[:, None]).astype(np.int8)
    return d, q


@pytest.mark.parametrize("isa", ISAS, indirect=True)
def test_activation_quantization_layout(isa):
    """Q8A and Q8_K activation rows match a numpy reference byte for byte, under every ISA."""
    rng = np.random.default_rng(3)
    X = (rng.standard_normal((3, 512)) * rng.uniform(0.01, 10, size=(3, 1))).astype(np.float32)
    X[1, 32:64] = 0.0  # an all-zero block: d = 0, q = 0
    a = _core.quantize_activations(int(T.Q4_0), X)  # BlockQ8A: f32 d, i16 sum, i16 pad, i8[32]
    blocks = a.reshape(-1, 40)
    d, q = _numpy_q8(X, 32)
    assert np.array_equal(blocks[:, 0:4].copy().view(np.float32).ravel(), d)
    assert np.array_equal(blocks[:, 8:40].view(np.int8), q)
    assert np.array_equal(blocks[:, 4:6].copy().view(np.int16).ravel(), q.astype(np.int32).sum(axis=1))
    k = _core.quantize_activations(int(T.Q4_K), X).reshape(-1, 292)  # Q8_K: f32 d, i8[256], i16 bsums[16]
    d, q = _numpy_q8(X, 256)
    assert np.array_equal(k[:, 0:4].copy().view(np.float32).ravel(), d)
    assert np.array_equal(k[:, 4:260].view(np.int8), q)
    assert np.array_equal(k[:, 260:292].copy().view(np.int16),
                          q.astype(np.int32).reshape(-1, 16, 16).sum(axis=2))
    f = _core.quantize_activations(int(T.F16), X)
    assert np.array_equal(f.view(np.float32), X)


def test_thread_pool_many_small_jobs():
    """Hundreds of back-to-back pool jobs of mixed sizes (dynamic chunks, late
    workers skipping jobs) always give exactly the single-thread result."""
    rng = np.random.default_rng(11)
    W = make_weights(T.Q8_0, 200, 256, rng)
    X = rng.standard_normal((64, 256)).astype(np.float32)
    ref = _core.matmul(int(T.Q8_0), W, X, 1)
    for i in range(300):
        m = int(rng.integers(1, 65))
        n_threads = 2 + i % 2
        got = _core.matmul(int(T.Q8_0), W, X[:m], n_threads)
        assert np.array_equal(got.view(np.uint32), ref[:m].view(np.uint32)), f"call {i}: M={m}"


def test_matmul_from_two_python_threads():
    """The GIL is released; concurrent callers are serialised on the shared pool."""
    import threading
    rng = np.random.default_rng(12)
    W = make_weights(T.Q4_0, 96, 512, rng)
    X = rng.standard_normal((16, 512)).astype(np.float32)
    ref = _core.matmul(int(T.Q4_0), W, X, 2)
    errors = []

    def worker():
        for _ in range(50):
            if not np.array_equal(_core.matmul(int(T.Q4_0), W, X, 2), ref):
                errors.append("mismatch")

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors


def test_matmul_shared_activations_match_matmul():
    """Quantizing X once for several weights (Q4_0, Q8_0, Q5_0 share Q8A rows)
    gives the same bits as separate matmuls; mismatched types are refused."""
    rng = np.random.default_rng(13)
    X = rng.standard_normal((9, 512)).astype(np.float32)
    types = [T.Q4_0, T.Q8_0, T.Q5_0]
    Ws = [make_weights(t, 24 + 8 * i, 512, rng) for i, t in enumerate(types)]
    outs = _core.matmul_shared([int(t) for t in types], Ws, X, 2)
    for t, W, Y in zip(types, Ws, outs):
        assert np.array_equal(Y.view(np.uint32), _core.matmul(int(t), W, X, 2).view(np.uint32)), t.name
    with pytest.raises(ValueError, match="prepared for Q4_0 cannot be used with Q4_K"):
        _core.matmul_shared([int(T.Q4_0), int(T.Q4_K)], [Ws[0], make_weights(T.Q4_K, 8, 512, rng)], X)


# --- exact mode (precise models): float32 activations, dequantized weight rows ------------
# Nothing is rounded to 8 bits, so the only error is float32 accumulation: elementwise
# |Y - R| <= EXACT_REL * (|X| . |W|^T), the error scale of a float32 dot product
# (measured <= 2.9e-7 generic, 6.5e-8 AVX2/AVX-512 at K = 512).
EXACT_REL = 1e-6


@pytest.mark.parametrize("isa", ISAS, indirect=True)
@pytest.mark.parametrize("qtype", MATMUL_TYPES, ids=lambda t: t.name)
def test_exact_matmul_vs_float64(qtype, isa):
    W, X, Wf = _case(qtype)
    for M in (1, 7, 32):
        Y = _core.matmul(int(qtype), W, X[:M], 2, precise=True)
        assert Y.shape == (M, N) and Y.dtype == np.float32
        x = X[:M].astype(np.float64)
        err = np.abs(Y - x @ Wf.T) / (np.abs(x) @ np.abs(Wf).T)
        assert err.max() < EXACT_REL, f"{qtype.name} {isa} M={M}: relative error {err.max():.3g}"
    if qtype not in FLOAT_TYPES:     # the fast path rounds activations: far coarser
        fast = _core.matmul(int(qtype), W, X[:32], 2)
        ref = x @ Wf.T
        assert np.abs(fast - ref).max() > 100 * np.abs(Y - ref).max()


@pytest.mark.parametrize("isa", ISAS, indirect=True)
@pytest.mark.parametrize("qtype", [T.Q4_K, T.Q8_0, T.IQ4_NL], ids=lambda t: t.name)
def test_exact_matmul_is_the_f32_kernel_on_dequantized_rows(qtype, isa):
    """Bit for bit the F32 kernel on gguf-dequantized weights, across several scratch slabs
    (K = 2048: 32 rows a slab), for every M, row split and thread count."""
    rng = np.random.default_rng(21)
    n, k = 100, 2048
    W = make_weights(qtype, n, k, rng)
    X = rng.standard_normal((19, k)).astype(np.float32)
    Wf32 = np.ascontiguousarray(dequantize(W, qtype).reshape(n, k).astype(np.float32))
    want = _core.matmul(int(T.F32), Wf32.view(np.uint8), X, 2)
    got = _core.matmul(int(qtype), W, X, 2, precise=True)
    assert np.array_equal(got.view(np.uint32), want.view(np.uint32))
    for n_threads, lo, hi in ((1, 0, 1), (3, 4, 11), (2, 18, 19)):
        part = _core.matmul(int(qtype), W, X[lo:hi], n_threads, precise=True)
        assert np.array_equal(part.view(np.uint32), want[lo:hi].view(np.uint32))
    part = _core.matmul(int(qtype), W[37:90], X, 2, precise=True)
    assert np.array_equal(part.view(np.uint32), want[:, 37:90].view(np.uint32))


def test_exact_matmul_shared_mixes_activation_families():
    """In exact mode one float32 copy of X serves weights of any types (Q8A, Q8_K and
    float families together), bit-identical to separate exact matmuls."""
    rng = np.random.default_rng(22)
    X = rng.standard_normal((9, 512)).astype(np.float32)
    types = [T.Q4_0, T.Q4_K, T.Q6_K, T.F16, T.IQ4_XS]
    Ws = [make_weights(t, 16 + 8 * i, 512, rng) for i, t in enumerate(types)]
    outs = _core.matmul_shared([int(t) for t in types], Ws, X, 2, precise=True)
    for t, W, Y in zip(types, Ws, outs):
        one = _core.matmul(int(t), W, X, 2, precise=True)
        assert np.array_equal(Y.view(np.uint32), one.view(np.uint32)), t.name
    with pytest.raises(ValueError, match="Q8_K cannot be a weight type"):
        _core.matmul(int(T.Q8_K), np.zeros((1, 292), np.uint8), np.zeros((1, 256), np.float32),
                     precise=True)


@pytest.mark.slow
@pytest.mark.parametrize("isa", ISAS, indirect=True)
def test_matmul_real_model_weights(real_model_path, isa):
    """For every weight type in each real model: the first 64 rows of one tensor of
    that type times random activations, against the float64 reference."""
    from kernel_data import real_model_tensors
    data = np.memmap(real_model_path, dtype=np.uint8, mode="r")
    seen = set()
    rng = np.random.default_rng(5)
    for name, qtype, off, n_bytes, (rows, row_len) in real_model_tensors(real_model_path):
        if qtype in seen or rows < 64:
            continue
        seen.add(qtype)
        rb = n_bytes // rows
        W = np.array(data[off:off + 64 * rb]).reshape(64, rb)
        X = rng.standard_normal((7, row_len)).astype(np.float32)
        ref = X.astype(np.float64) @ dequantize(W, qtype).reshape(64, row_len).astype(np.float64).T
        tol = 1e-10 if qtype in FLOAT_TYPES else 1e-3
        err = nmse(_core.matmul(int(qtype), W, X, 2), ref)
        assert err < tol, f"{real_model_path.name}:{name} ({qtype.name}) {isa}: NMSE {err:.3g}"
    assert len(seen) >= 2
