"""The x8 weight layout: 8 weight rows interleaved per block (csrc/repack.cpp), for the
32-value types and Q4_K / Q6_K.

A loaded model keeps its layer weights of the 32-value types in this layout, so
these check what decode and prefill run: the packing is lossless (checked through
gguf.quants' dequantization of the unpacked rows, an independent decoder), the x8
kernels agree with a float64 reference and with the ggml-row kernels, and they
are batch invariant. Tolerances are those of tests/test_matmul.py: NMSE < 1e-3
against float64 (8-bit activations), < 1e-10 between two kernels that see the
same quantized activations and differ only in float summation order.
"""
from __future__ import annotations

import numpy as np
import pytest
from gguf import GGMLQuantizationType as T
from gguf.quants import dequantize
from kernel_data import make_weights, nmse, random_blocks

from llamalite import _core

ISAS = _core.supported_isas()
X8_32 = [T.Q4_0, T.Q4_1, T.Q5_0, T.Q5_1, T.Q8_0, T.IQ4_NL]
X8_TYPES = X8_32 + [T.Q4_K, T.Q6_K]
# 7 groups of 8 rows: in chunks of 32 rows a decode runs tiles of 4, 2 and 1 groups
N = 56


def k_of(qtype: T) -> int:
    """Row length: 640 for the 32-value types, 512 (two super-blocks) for the K-quants."""
    return 512 if qtype in (T.Q4_K, T.Q6_K) else 640


def _case(qtype: T, seed: int = 0):
    rng = np.random.default_rng(seed + int(qtype))
    K = k_of(qtype)
    W = make_weights(qtype, N, K, rng)
    X = rng.standard_normal((64, K)).astype(np.float32)
    return W, X, K


@pytest.mark.parametrize("qtype", X8_TYPES, ids=lambda t: t.name)
def test_pack_is_lossless(qtype):
    rng = np.random.default_rng(7)
    K = k_of(qtype)
    W = random_blocks(qtype, N, K, rng)    # every bit pattern of the quants, fifth bits included
    P = _core.pack_x8(int(qtype), W, K)
    assert P.shape == W.shape and not np.array_equal(P, W)
    U = _core.unpack_x8(int(qtype), P, K)
    assert np.array_equal(U, W)
    a = dequantize(U, qtype)
    b = dequantize(W, qtype)
    assert np.array_equal(a.view(np.uint32), b.view(np.uint32))


@pytest.mark.parametrize("qtype", X8_32, ids=lambda t: t.name)
def test_pack_places_row_bytes(qtype):
    """Spot-check the documented layout: byte 4j+i of quant vector t is row j's qs[4t+i],
    and d[j] leads the block."""
    rng = np.random.default_rng(8)
    W = random_blocks(qtype, 8, 32, rng)
    P = _core.pack_x8(int(qtype), W, 32).reshape(-1)
    qs_off = {T.Q4_0: 2, T.Q4_1: 4, T.Q5_0: 6, T.Q5_1: 8, T.Q8_0: 2, T.IQ4_NL: 2}[qtype]
    x8_qs = {T.Q4_0: 16, T.Q4_1: 32, T.Q5_0: 48, T.Q5_1: 64, T.Q8_0: 16, T.IQ4_NL: 16}[qtype]
    n_vec = 8 if qtype == T.Q8_0 else 4
    for j in range(8):
        assert bytes(P[2 * j:2 * j + 2]) == bytes(W[j, 0:2])
        for t in range(n_vec):
            got = P[x8_qs + 32 * t + 4 * j: x8_qs + 32 * t + 4 * j + 4]
            assert np.array_equal(got, W[j, qs_off + 4 * t: qs_off + 4 * t + 4])


SET4 = [T.Q4_0, T.Q4_1, T.Q5_0, T.Q5_1, T.Q8_0, T.IQ4_NL]


@pytest.mark.parametrize("qtype", X8_TYPES, ids=lambda t: t.name)
def test_pack_interleaves_whole_sets_of_four_groups(qtype):
    """The 32-value types store each whole set of 4 groups (32 rows) block by block
    (group 0's block b, group 1's, 2's, 3's, then block b + 1), and the groups after the
    last whole set one after the other; Q4_K and Q6_K keep each group whole."""
    rng = np.random.default_rng(9)
    K = k_of(qtype)
    N = 56                                  # one whole set and a tail of 3 groups
    W = random_blocks(qtype, N, K, rng)
    P = _core.pack_x8(int(qtype), W, K).reshape(-1)
    bs8 = 8 * _core.type_traits(int(qtype))["type_size"]
    nb = K // _core.type_traits(int(qtype))["block_size"]
    set4 = qtype in SET4

    bs = bs8 // 8
    d_off = 208 if qtype == T.Q6_K else 0   # the fp16 scale d in a ggml block; an x8 block starts with d[8]

    def group_alone(g):                     # group g's x8 blocks, as an 8-row tensor packs them
        return _core.pack_x8(int(qtype), W[8 * g:8 * g + 8], K).reshape(nb, bs8)

    for g in range(N // 8):
        for b in (0, 1, nb - 1):
            if set4 and g < 4:
                off = (b * 4 + g) * bs8
            else:
                off = (g * nb + b) * bs8
            for j in range(8):              # against the ggml rows themselves
                want = W[8 * g + j, b * bs + d_off: b * bs + d_off + 2]
                assert np.array_equal(P[off + 2 * j: off + 2 * j + 2], want), f"group {g} block {b} row {j}"
            assert np.array_equal(P[off:off + bs8], group_alone(g)[b]), f"group {g} block {b}"


@pytest.mark.parametrize("isa", ISAS, indirect=True)
@pytest.mark.parametrize("qtype", X8_TYPES, ids=lambda t: t.name)
def test_x8_every_tail_of_a_set(qtype, isa):
    """N = 8 .. 72: whole sets, tails of 1 to 3 groups, and both; a decode (M = 1),
    a small batch and a prefill-sized one, on 1 and 2 threads, agree with the ggml-row
    kernel."""
    rng = np.random.default_rng(10 + int(qtype))
    K = k_of(qtype)
    X = rng.standard_normal((9, K)).astype(np.float32)
    for N in (8, 16, 24, 32, 40, 48, 72):
        W = make_weights(qtype, N, K, rng)
        P = _core.pack_x8(int(qtype), W, K)
        assert np.array_equal(_core.unpack_x8(int(qtype), P, K), W)
        for M in (1, 3, 9):
            Yg = _core.matmul(int(qtype), W, X[:M], 1).astype(np.float64)
            for n_threads in (1, 2):
                Y = _core.matmul(int(qtype), P, X[:M], n_threads, x8=True)
                assert nmse(Y, Yg) < 1e-10, f"{qtype.name} {isa} N={N} M={M} threads={n_threads}"


def test_q6k_pack_places_vectors_in_decode_order():
    """Q6_K x8: d[8], scales[8s+j], then 96 bytes per step 8h+t: ql vector 16h+t, ql vector
    16h+8+t, qh vector 8h+t, where byte 4j+c of ql (qh) vector v is row j's ql[4v+c] (qh[4v+c])."""
    rng = np.random.default_rng(11)
    W = random_blocks(T.Q6_K, 8, 256, rng)          # ggml Q6_K: ql[128], qh[64], scales[16], d
    P = _core.pack_x8(int(T.Q6_K), W, 256).reshape(-1)
    q0 = 16 + 128
    for j in range(8):
        ql, qh, sc = W[j, 0:128], W[j, 128:192], W[j, 192:208]
        assert bytes(P[2 * j:2 * j + 2]) == bytes(W[j, 208:210])
        assert all(P[16 + 8 * s_ + j] == sc[s_] for s_ in range(16))
        for h in range(2):
            for t in range(8):
                step = q0 + 96 * (8 * h + t)
                for part, v, src in ((0, 16 * h + t, ql), (1, 16 * h + 8 + t, ql), (2, 8 * h + t, qh)):
                    got = P[step + 32 * part + 4 * j: step + 32 * part + 4 * j + 4]
                    assert np.array_equal(got, src[4 * v:4 * v + 4]), (j, h, t, part)


def test_pack_rejects_what_has_no_layout():
    W = np.zeros((12, 18), np.uint8)
    with pytest.raises(ValueError, match="no x8 layout"):
        _core.pack_x8(int(T.Q4_0), W, 32)          # 12 rows: not a multiple of 8
    with pytest.raises(ValueError, match="no x8 layout"):
        _core.pack_x8(int(T.Q5_K), np.zeros((8, 176), np.uint8), 256)
    with pytest.raises(ValueError, match="no x8 layout"):
        _core.matmul(int(T.Q4_0), W, np.zeros((1, 32), np.float32), x8=True)


@pytest.mark.parametrize("isa", ISAS, indirect=True)
@pytest.mark.parametrize("qtype", X8_TYPES, ids=lambda t: t.name)
def test_x8_matmul_vs_float64_and_ggml_rows(qtype, isa):
    W, X, K = _case(qtype)
    P = _core.pack_x8(int(qtype), W, K)
    Wf = dequantize(W, qtype).reshape(N, K).astype(np.float64)
    for M in (1, 2, 7, 32, 64):
        Y = _core.matmul(int(qtype), P, X[:M], 2, x8=True)
        ref = X[:M].astype(np.float64) @ Wf.T
        assert nmse(Y, ref) < 1e-3, f"{qtype.name} {isa} M={M}"
        Yg = _core.matmul(int(qtype), W, X[:M], 2)
        assert nmse(Y, Yg.astype(np.float64)) < 1e-10, f"{qtype.name} {isa} M={M} vs ggml rows"


@pytest.mark.parametrize("isa", ISAS, indirect=True)
@pytest.mark.parametrize("qtype", X8_TYPES, ids=lambda t: t.name)
def test_x8_batch_invariance(qtype, isa):
    """Row i of Y is bit-identical for every M, row offset, thread count and weight split."""
    W, X, K = _case(qtype, 1)
    P = _core.pack_x8(int(qtype), W, K)
    full = _core.matmul(int(qtype), P, X[:37], 2, x8=True)
    for n_threads in (1, 2, 3):
        for lo, hi in ((0, 1), (5, 6), (2, 4), (4, 7), (6, 10), (3, 10), (0, 37), (1, 33)):
            part = _core.matmul(int(qtype), P, X[lo:hi], n_threads, x8=True)
            assert np.array_equal(part.view(np.uint32), full[lo:hi].view(np.uint32)), \
                f"{qtype.name} {isa}: rows {lo}:{hi}, {n_threads} threads"
    # groups g0..g1-1 packed on their own: other sets, tails and tiles, the same bits
    for g0, g1 in ((1, 5), (1, 6), (2, 7), (3, 4), (0, 2)):
        Pg = _core.pack_x8(int(qtype), W[8 * g0:8 * g1], K)
        part = _core.matmul(int(qtype), Pg, X[:37], 2, x8=True)
        assert np.array_equal(part.view(np.uint32), full[:, 8 * g0:8 * g1].view(np.uint32))
        one = _core.matmul(int(qtype), Pg, X[3:4], 1, x8=True)
        assert np.array_equal(one.view(np.uint32), full[3:4, 8 * g0:8 * g1].view(np.uint32))


@pytest.mark.skipif("amx" not in ISAS, reason="needs a CPU and OS with AMX-INT8")
@pytest.mark.parametrize("qtype", X8_TYPES, ids=lambda t: t.name)
def test_amx_gives_the_avx512_bits(qtype):
    """The amx set (AMX tiles for batched 32-value x8 matmuls, rows past the last
    multiple of 16 on the avx512 kernel) gives bit for bit what avx512 gives: for
    batches of 16 to 100 rows, an odd block count, sets with tails of 1 to 3
    groups (a lone last group fills half a tile), 1 and 2 threads."""
    rng = np.random.default_rng(20 + int(qtype))
    K = 288 if qtype not in (T.Q4_K, T.Q6_K) else 512      # 9 blocks of 32: an odd count
    X = rng.standard_normal((100, K)).astype(np.float32)
    before = _core.active_isa()
    try:
        for N in (8, 40, 56, 96):
            W = make_weights(qtype, N, K, rng)
            P = _core.pack_x8(int(qtype), W, K)
            for M in (16, 17, 31, 48, 100):
                for n_threads in (1, 2):
                    _core.set_isa("avx512")
                    ref = _core.matmul(int(qtype), P, X[:M], n_threads, x8=True)
                    _core.set_isa("amx")
                    got = _core.matmul(int(qtype), P, X[:M], n_threads, x8=True)
                    assert np.array_equal(got.view(np.uint32), ref.view(np.uint32)), \
                        f"{qtype.name} N={N} M={M} threads={n_threads}"
    finally:
        _core.set_isa(before)


@pytest.mark.parametrize("qtype", X8_TYPES, ids=lambda t: t.name)
def test_x8_exact_mode_is_the_ggml_exact_path(qtype):
    W, X, K = _case(qtype, 2)
    P = _core.pack_x8(int(qtype), W, K)
    a = _core.matmul(int(qtype), P, X[:5], 2, precise=True, x8=True)
    b = _core.matmul(int(qtype), W, X[:5], 2, precise=True)
    assert np.array_equal(a.view(np.uint32), b.view(np.uint32))

