"""A numpy reference of the block quantizers in csrc/quantize.cpp: the readable spec.

quantize(type, x, imatrix=None) gives the same bytes as llamalite._core.quantize_rows and
llama.cpp's ggml_quantize_chunk. Every block of every row is worked on at once (arrays
[blocks, values]); within a block the sums run value by value in float32, in llama.cpp's
order, because that order decides the rounding and so the chosen scales. Slow (tests only).

Without an imatrix each type takes llama.cpp's reference path; with one (a weight per
column) the weighted searches. F16, BF16 and Q8_0 ignore the imatrix, as llama.cpp does.
"""
from __future__ import annotations

import numpy as np

f32 = np.float32
EPS = f32(1e-15)    # a group whose largest magnitude is below this is all zero
QK = 32             # values per block of the 32-value types
QK_K = 256          # values per super-block of the K-quants
IQ4_LEVELS = np.array([-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113], np.int32)

# GGUF type id -> (name, values per block, bytes per block)
TYPES = {
    1: ("F16", 1, 2), 30: ("BF16", 1, 2), 2: ("Q4_0", 32, 18), 3: ("Q4_1", 32, 20), 6: ("Q5_0", 32, 22),
    7: ("Q5_1", 32, 24), 8: ("Q8_0", 32, 34), 10: ("Q2_K", 256, 84), 11: ("Q3_K", 256, 110),
    12: ("Q4_K", 256, 144), 13: ("Q5_K", 256, 176), 14: ("Q6_K", 256, 210), 20: ("IQ4_NL", 32, 18),
    23: ("IQ4_XS", 256, 136),
}


# --- scalar helpers ------------------------------------------------------------------

def rint(v) -> np.ndarray:
    """Nearest integer, ties to even (llama.cpp's nearest_int), as int32."""
    return np.rint(np.asarray(v, f32)).astype(np.int32)


def fp16_bits(v) -> np.ndarray:
    """float32 -> fp16 bit patterns (round to nearest even; beyond 65504 infinity)."""
    with np.errstate(over="ignore"):
        return np.asarray(v, f32).astype(np.float16).view(np.uint16)


def fp16_value(bits) -> np.ndarray:
    return np.asarray(bits, np.uint16).view(np.float16).astype(f32)


def bf16_bits(x: np.ndarray) -> np.ndarray:
    u = np.asarray(x, f32).view(np.uint32).astype(np.uint64)
    r = ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)
    nan = (u & 0x7FFFFFFF) > 0x7F800000
    return np.where(nan, ((u >> 16) | 64).astype(np.uint16), r)


def acc(terms: np.ndarray, first: bool = False) -> np.ndarray:
    """Sum of terms [B, n] along the values in order, in float32 (from 0, or from the first)."""
    s = terms[:, 0].copy() if first else f32(0) + terms[:, 0]
    for i in range(1, terms.shape[1]):
        s = s + terms[:, i]
    return s


def first_absmax(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(largest |x|, the first value reaching it) per row."""
    idx = np.argmax(np.abs(x), axis=1)
    mx = x[np.arange(len(x)), idx]
    return np.abs(mx), mx


def seq_min_max(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Running min and max with strict comparisons (keeps the first of equal values: -0 vs 0)."""
    mn, mx = x[:, 0].copy(), x[:, 0].copy()
    for i in range(1, x.shape[1]):
        mn = np.where(x[:, i] < mn, x[:, i], mn)
        mx = np.where(x[:, i] > mx, x[:, i], mx)
    return mn, mx


def pos_max(v: np.ndarray) -> np.ndarray:
    """max(0, row max) with llama.cpp's strict comparison: +0 unless a value is above 0."""
    m = v.max(axis=1)
    return np.where(m > 0, m, f32(0))


def col(v: np.ndarray) -> np.ndarray:
    return np.asarray(v, f32)[:, None]


# --- scale searches (see csrc/quantize.cpp for the prose) ------------------------------

def fit_signed(x: np.ndarray, nmax: int, qw: np.ndarray | None):
    """Levels -nmax..nmax-1 and one scale per row, best of 19 inverse scales; L = level + nmax."""
    amax, mx = first_absmax(x)
    w = qw if qw is not None else x * x

    def levels(iscale):
        return np.clip(rint(col(iscale) * x), -nmax, nmax - 1)

    def sums(l):
        lf = l.astype(f32)
        return acc(w * x * lf), acc(w * lf * lf)

    l = levels(f32(-nmax) / mx)
    L = l + nmax
    sumlx, suml2 = sums(l)
    scale = np.where(suml2 != 0, sumlx / suml2, f32(0))
    best = scale * sumlx
    for step in range(-9, 10):
        if step == 0:
            continue
        l = levels(-(f32(nmax) + f32(0.1) * f32(step)) / mx)
        sumlx, suml2 = sums(l)
        upd = (suml2 > 0) & (sumlx * sumlx > best * suml2)
        L = np.where(upd[:, None], l + nmax, L)
        scale = np.where(upd, sumlx / suml2, scale)
        best = np.where(upd, scale * sumlx, best)
    zero = amax < EPS
    return np.where(zero, f32(0), scale).astype(f32), np.where(zero[:, None], 0, L)


def fit_signed_q3(x: np.ndarray, nmax: int):
    """Q3_K's search without imatrix: levels from -nmax / max, then single-value moves (weights x^2)."""
    amax, mx = first_absmax(x)
    w = x * x
    L = np.clip(rint(col(f32(-nmax) / mx) * x), -nmax, nmax - 1)
    Lf = L.astype(f32)
    sumlx, suml2 = acc(w * x * Lf), acc(w * Lf * Lf)
    active = np.ones(len(x), bool)
    for _ in range(5):
        changed = np.zeros(len(x), bool)
        for i in range(x.shape[1]):
            wi, xi, li = w[:, i], x[:, i], L[:, i].astype(f32)
            slx = sumlx - wi * xi * li
            sl2 = suml2 - wi * li * li
            new_l = np.clip(rint(xi * sl2 / slx), -nmax, nmax - 1)
            nf = new_l.astype(f32)
            slx2 = slx + wi * xi * nf
            sl22 = sl2 + wi * nf * nf
            ok = active & (slx > 0) & (new_l != L[:, i]) & (sl22 > 0) & (slx2 * slx2 * suml2 > sumlx * sumlx * sl22)
            L[:, i] = np.where(ok, new_l, L[:, i])
            sumlx = np.where(ok, slx2, sumlx)
            suml2 = np.where(ok, sl22, suml2)
            changed |= ok
        active &= changed
        if not active.any():
            break
    scale = np.where(suml2 > 0, sumlx / suml2, f32(0))
    zero = amax < EPS
    return np.where(zero, f32(0), scale).astype(f32), np.where(zero[:, None], 0, L + nmax)


def fit_min(x: np.ndarray, nmax: int, weights: np.ndarray, rmin: float, rdelta: float, nstep: int,
            use_mad: bool, weighted: bool):
    """Levels 0..nmax, a scale and a min (x ~ scale * L - the_min); returns (scale, the_min, L).

    weighted=False: the reference K-quant search; True: the imatrix one (clamps the level
    before rounding and treats max <= min as flat)."""
    mn, mx = seq_min_max(x)
    sum_w = acc(weights, first=True)
    sum_x = acc(weights * x, first=True)
    mn = np.where(mn > 0, f32(0), mn)
    mn0 = mn
    flat = (mx <= mn) if weighted else (mx == mn)
    rng = mx - mn
    iscale = f32(nmax) / rng
    scale = f32(1) / iscale
    L = np.clip(rint(col(iscale) * (x - col(mn))), 0, nmax)

    def err(sc, m, lv):
        d = col(sc) * lv.astype(f32) + col(m) - x
        d = np.abs(d) if use_mad else d * d
        return acc(weights * d)

    best = err(scale, mn, L)
    for step in range(nstep + 1):
        # mn is the best fit so far: the grid moves with it
        iscale = (f32(rmin) + f32(rdelta) * f32(step) + f32(nmax)) / (mx - mn)
        v = col(iscale) * (x - col(mn))
        if weighted:
            la = np.where(v > 0, rint(np.minimum(v, f32(nmax))), 0)
        else:
            la = np.clip(rint(v), 0, nmax)
        lf = la.astype(f32)
        sum_l, sum_l2, sum_xl = acc(weights * lf), acc(weights * lf * lf), acc(weights * lf * x)
        D = sum_w * sum_l2 - sum_l * sum_l
        this_scale = (sum_w * sum_xl - sum_x * sum_l) / D
        this_min = (sum_l2 * sum_x - sum_l * sum_xl) / D
        pos = this_min > 0
        this_min = np.where(pos, f32(0), this_min)
        this_scale = np.where(pos, sum_xl / sum_l2, this_scale)
        cur = err(this_scale, this_min, la)
        upd = (D > 0) & (cur < best)
        L = np.where(upd[:, None], la, L)
        best = np.where(upd, cur, best)
        scale = np.where(upd, this_scale, scale)
        mn = np.where(upd, this_min, mn)
    scale = np.where(flat, f32(0), scale).astype(f32)
    L = np.where(flat[:, None], 0, L)
    return scale, (-np.where(flat, mn0, mn)).astype(f32), L


def fit_unsigned(x: np.ndarray, nmax: int, qw: np.ndarray):
    """Levels 0..nmax for non-negative x (sub-block scales and mins), weighted by qw; L as uint8."""
    mx = x[:, 0].copy()
    for i in range(1, x.shape[1]):
        mx = np.maximum(mx, x[:, i])
    zero = mx < EPS

    def err(sc, lv):
        d = x - col(sc) * lv.astype(f32)
        return acc(qw * d * d)

    iscale = f32(nmax) / mx
    L0 = rint(col(iscale) * x).astype(np.uint8)
    best = err(f32(1) / iscale, L0)
    for step in range(-4, 5):
        if step == 0:
            continue
        isc = (f32(0.1) * f32(step) + f32(nmax)) / mx
        l = np.minimum(nmax, rint(col(isc) * x))
        mse = err(f32(1) / isc, l)
        upd = mse < best
        best = np.where(upd, mse, best)
        iscale = np.where(upd, isc, iscale)
    l = np.minimum(nmax, rint(col(iscale) * x))
    L = l.astype(np.uint8)          # stored wrapped; the sums use the level itself
    lf = l.astype(f32)
    sumlx, suml2 = acc(qw * x * lf), acc(qw * lf * lf)
    active = np.ones(len(x), bool)
    for _ in range(5):
        changed = np.zeros(len(x), bool)
        for i in range(x.shape[1]):
            wi, xi, li = qw[:, i], x[:, i], L[:, i].astype(f32)
            slx = sumlx - wi * xi * li
            sl2 = suml2 - wi * li * li
            new_l = np.minimum(nmax, rint(xi * sl2 / slx))
            nf = new_l.astype(f32)
            slx2 = slx + wi * xi * nf
            sl22 = sl2 + wi * nf * nf
            ok = (active & (slx > 0) & (sl2 > 0) & (new_l != L[:, i].astype(np.int32))
                  & (slx2 * slx2 * suml2 > sumlx * sumlx * sl22))
            L[:, i] = np.where(ok, new_l.astype(np.uint8), L[:, i])
            sumlx = np.where(ok, slx2, sumlx)
            suml2 = np.where(ok, sl22, suml2)
            changed |= ok
        active &= changed
        if not active.any():
            break
    scale = np.where(suml2 > 0, sumlx / suml2, f32(0))
    return np.where(zero, f32(0), scale).astype(f32), np.where(zero[:, None], np.uint8(0), L)


def imatrix_weights(qw: np.ndarray, x: np.ndarray, sigma2: np.ndarray) -> np.ndarray:
    return qw * np.sqrt(col(sigma2) + x * x)


# --- packing -----------------------------------------------------------------------

def pack_nibbles(lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    return (lo.astype(np.uint8) & 0xF) | ((hi.astype(np.uint8) & 0xF) << 4)


def pack_2bit(L: np.ndarray) -> np.ndarray:
    """[B, 256] levels 0..3 -> [B, 64]: byte l of group g holds L[128g + l + 32k] in bits 2k."""
    L = L.astype(np.uint8).reshape(-1, 2, 4, 32)
    out = L[:, :, 0] | (L[:, :, 1] << 2) | (L[:, :, 2] << 4) | (L[:, :, 3] << 6)
    return out.reshape(-1, 64)


def qh_bits(L: np.ndarray) -> np.ndarray:
    """The fifth bits of 32 levels as 4 little-endian bytes (value j -> bit j)."""
    bits = ((L.astype(np.uint32) >> 4) & 1) << np.arange(32, dtype=np.uint32)
    return bits.sum(axis=1, dtype=np.uint32).astype("<u4").view(np.uint8).reshape(-1, 4)


def f16col(v) -> np.ndarray:
    return fp16_bits(v).reshape(-1, 1).view(np.uint8)


def scale_min_k4(ls: np.ndarray, lm: np.ndarray) -> np.ndarray:
    """8 6-bit scales and mins [B, 8] -> the 12 packed bytes of Q4_K / Q5_K."""
    ls, lm = ls.astype(np.uint8), lm.astype(np.uint8)
    s = np.zeros((len(ls), 12), np.uint8)
    s[:, 0:4] = ls[:, :4]
    s[:, 4:8] = lm[:, :4]
    s[:, 8:12] = (ls[:, 4:] & 0xF) | ((lm[:, 4:] & 0xF) << 4)
    s[:, 0:4] |= (ls[:, 4:] >> 4) << 6
    s[:, 4:8] |= (lm[:, 4:] >> 4) << 6
    return s


def unpack_scale_min_k4(s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    sc = np.concatenate([s[:, 0:4] & 63, (s[:, 8:12] & 0xF) | ((s[:, 0:4] >> 6) << 4)], axis=1)
    mn = np.concatenate([s[:, 4:8] & 63, (s[:, 8:12] >> 4) | ((s[:, 4:8] >> 6) << 4)], axis=1)
    return sc, mn


def scales_q3k(l: np.ndarray) -> np.ndarray:
    """16 biased 6-bit scales [B, 16] (0..63) -> Q3_K's 12 bytes."""
    l = l.astype(np.uint8)
    s = np.zeros((len(l), 12), np.uint8)
    s[:, 0:8] = (l[:, 0:8] & 0xF) | ((l[:, 8:16] & 0xF) << 4)
    for j in range(16):
        s[:, 8 + j % 4] |= (l[:, j] >> 4) << (2 * (j // 4))
    return s


def unscale_q3k(s: np.ndarray) -> np.ndarray:
    j = np.arange(16)
    lo = np.where(j < 8, s[:, j % 8] & 0xF, s[:, j % 8] >> 4).astype(np.int32)
    hi = (s[:, 8 + j % 4] >> (2 * (j // 4))) & 3
    return (lo | (hi.astype(np.int32) << 4)) - 32


# --- 32-value types ------------------------------------------------------------------

def _absmax_type(x, nmax_div: float, bias: float, top: int):
    """Q4_0 / Q5_0 reference: d = max / -nmax_div; level = min(top, trunc(x / d + bias))."""
    _, mx = first_absmax(x)
    d = mx / f32(-nmax_div)
    idv = np.where(d != 0, f32(1) / d, f32(0))
    q = np.minimum(top, (x * col(idv) + f32(bias)).astype(np.int32).astype(np.int8).astype(np.int32))
    return d, q


def _minmax_type(x, nmax: int, clamp: bool):
    mn, mx = seq_min_max(x)
    d = (mx - mn) / f32(nmax)
    idv = np.where(d != 0, f32(1) / d, f32(0))
    q = ((x - col(mn)) * col(idv) + f32(0.5)).astype(np.int32)
    q = np.minimum(15, q.astype(np.int8).astype(np.int32)) if clamp else q.astype(np.uint8).astype(np.int32)
    return d, mn, q


def _row_sigma2(xr: np.ndarray, nb: int) -> np.ndarray:
    """Each row's mean square, repeated for its nb blocks."""
    return np.repeat(acc(xr * xr) / f32(xr.shape[1]), nb)


def q4_0(xr, qw):
    x = xr.reshape(-1, QK)
    if qw is None:
        d, q = _absmax_type(x, 8, 8.5, 15)
    else:
        w = imatrix_weights(np.tile(qw.reshape(-1, QK), (len(xr), 1)), x, _row_sigma2(xr, xr.shape[1] // QK))
        d, q = fit_signed(x, 8, w)
    return np.concatenate([f16col(d), pack_nibbles(q[:, :16], q[:, 16:])], axis=1)


def q4_1(xr, qw):
    x = xr.reshape(-1, QK)
    if qw is None:
        d, m, q = _minmax_type(x, 15, True)
    else:
        w = imatrix_weights(np.tile(qw.reshape(-1, QK), (len(xr), 1)), x, _row_sigma2(xr, xr.shape[1] // QK))
        d, the_min, q = fit_min(x, 15, w, -0.9, 0.05, 36, False, True)
        m = -the_min
    return np.concatenate([f16col(d), f16col(m), pack_nibbles(q[:, :16], q[:, 16:])], axis=1)


def q5_0(xr, qw):
    x = xr.reshape(-1, QK)
    if qw is None:
        d, q = _absmax_type(x, 16, 16.5, 31)
    else:
        w = imatrix_weights(np.tile(qw.reshape(-1, QK), (len(xr), 1)), x, _row_sigma2(xr, xr.shape[1] // QK))
        d, q = fit_signed(x, 16, w)
    return np.concatenate([f16col(d), qh_bits(q), pack_nibbles(q[:, :16], q[:, 16:])], axis=1)


def q5_1(xr, qw):
    x = xr.reshape(-1, QK)
    if qw is None:
        d, m, q = _minmax_type(x, 31, False)
    else:
        w = imatrix_weights(np.tile(qw.reshape(-1, QK), (len(xr), 1)), x, _row_sigma2(xr, xr.shape[1] // QK))
        d, the_min, q = fit_min(x, 31, w, -0.9, 0.05, 36, False, True)
        m = -the_min
    return np.concatenate([f16col(d), f16col(m), qh_bits(q), pack_nibbles(q[:, :16], q[:, 16:])], axis=1)


def q8_0(xr, qw):
    x = xr.reshape(-1, QK)
    amax = np.abs(x).max(axis=1)
    d = amax / f32(127)
    idv = np.where(d != 0, f32(1) / d, f32(0))
    v = (x * col(idv)).astype(np.float64)
    t = np.trunc(v)
    q = np.where(np.abs(v - t) >= 0.5, t + np.sign(v), t).astype(np.int8)   # roundf: halves away from zero
    return np.concatenate([f16col(d), q.view(np.uint8)], axis=1)


# --- K-quants ------------------------------------------------------------------------

def _k_weights(xr, qw, sub: int, sigma_factor: float):
    """imatrix weights per sub-block [B * 256/sub, sub] and their sums, sigma2 per super-block."""
    x = xr.reshape(-1, QK_K)
    sigma2 = f32(sigma_factor) * acc(x * x) / f32(QK_K) if sigma_factor != 1 else acc(x * x) / f32(QK_K)
    xs = x.reshape(-1, sub)
    qws = np.tile(qw.reshape(-1, sub), (len(xr), 1))
    w = imatrix_weights(qws, xs, np.repeat(sigma2, QK_K // sub))
    return xs, w, acc(w).reshape(-1, QK_K // sub)


def _requant_min(x, d, dm, nmax, L):
    """Levels round((x + dm) / d) clamped to 0..nmax where d != 0; L kept elsewhere."""
    with np.errstate(all="ignore"):
        l = np.clip(rint((x + col(dm)) / col(d)), 0, nmax)
    return np.where(col(d) != 0, l, L)


def q2_k(xr, qw):
    x = xr.reshape(-1, 16)
    nb = len(x) // 16
    if qw is None:
        scales, mins, L = fit_min(x, 3, np.abs(x), -0.5, 0.1, 15, True, False)
        scales, mins = scales.reshape(nb, 16), mins.reshape(nb, 16)
        max_scale = pos_max(scales)
        max_min = pos_max(mins)
        with np.errstate(all="ignore"):
            ls = np.where(col(max_scale) > 0, rint(col(f32(15) / max_scale) * scales), 0)
            lm = np.where(col(max_min) > 0, rint(col(f32(15) / max_min) * mins), 0)
        sc = (ls.astype(np.uint8) | (lm << 4).astype(np.uint8))
        dh = fp16_bits(np.where(max_scale > 0, max_scale / f32(15), f32(0)))
        mh = fp16_bits(np.where(max_min > 0, max_min / f32(15), f32(0)))
    else:
        xs, w, sw = _k_weights(xr, qw, 16, 1)
        scales, mins, L = fit_min(xs, 3, w, -0.9, 0.05, 36, False, True)
        dm, Ls = fit_unsigned(scales.reshape(nb, 16), 15, sw)
        mm, Lm = fit_unsigned(mins.reshape(nb, 16), 15, sw)
        sc = Ls | (Lm << 4)
        dh, mh = fp16_bits(dm), fp16_bits(mm)
    d = (col(fp16_value(dh)) * (sc & 0xF).astype(f32)).reshape(-1)
    dmin = (col(fp16_value(mh)) * (sc >> 4).astype(f32)).reshape(-1)
    L = _requant_min(x, d, dmin, 3, L).reshape(nb, QK_K)
    return np.concatenate([sc, pack_2bit(L), dh.reshape(-1, 1).view(np.uint8), mh.reshape(-1, 1).view(np.uint8)],
                          axis=1)


def q3_k(xr, qw):
    x = xr.reshape(-1, 16)
    nb = len(x) // 16
    if qw is None:
        scales, L = fit_signed_q3(x, 4)
        scales = scales.reshape(nb, 16)
        _, max_scale = first_absmax(scales)
        with np.errstate(all="ignore"):
            iscale = f32(-32) / max_scale
            l = rint(col(iscale) * scales).astype(np.int8).astype(np.int32)
        l = np.clip(l, -32, 31) + 32
        has = max_scale != 0
        s = np.where(col(has), scales_q3k(np.where(col(has), l, 0)), 0).astype(np.uint8)
        dh = fp16_bits(np.where(has, f32(1) / iscale, f32(0)))
    else:
        xs, w, sw = _k_weights(xr, qw, 16, 2)
        scales, L = fit_signed(xs, 4, w)
        d_block, Ls = fit_signed(scales.reshape(nb, 16), 32, sw)
        s = scales_q3k(Ls)
        dh = fp16_bits(d_block)
    d = (col(fp16_value(dh)) * unscale_q3k(s).astype(f32)).reshape(-1)
    with np.errstate(all="ignore"):
        l = np.clip(rint(x / col(d)), -4, 3) + 4
    L = np.where(col(d) != 0, l, L).reshape(nb, QK_K)
    high = L > 3
    hm = (high.reshape(nb, 8, 32).astype(np.uint8) << np.arange(8, dtype=np.uint8)[None, :, None]).sum(
        axis=1, dtype=np.uint8)
    L = np.where(high, L - 4, L)
    return np.concatenate([hm, pack_2bit(L), s, dh.reshape(-1, 1).view(np.uint8)], axis=1)


def _q45_k(xr, qw, nmax: int):
    x = xr.reshape(-1, 32)
    nb = len(x) // 8
    if qw is None:
        av = np.sqrt(acc(x * x) / f32(32))
        w = col(av) + np.abs(x)
        rmin, nstep = (-1.0, 20) if nmax == 15 else (-0.5, 15)
        scales, mins, L = fit_min(x, nmax, w, rmin, 0.1, nstep, False, False)
        scales, mins = scales.reshape(nb, 8), mins.reshape(nb, 8)
        max_scale = pos_max(scales)
        max_min = pos_max(mins)
        with np.errstate(all="ignore"):
            inv_s = np.where(max_scale > 0, f32(63) / max_scale, f32(0))
            inv_m = np.where(max_min > 0, f32(63) / max_min, f32(0))
        ls = np.minimum(63, rint(col(inv_s) * scales).astype(np.uint8))
        lm = np.minimum(63, rint(col(inv_m) * mins).astype(np.uint8))
        dh, mh = fp16_bits(max_scale / f32(63)), fp16_bits(max_min / f32(63))
    else:
        xs, w, sw = _k_weights(xr, qw, 32, 2)
        scales, mins, L = fit_min(xs, nmax, w, -0.9, 0.05, 36, False, True)
        d_block, ls = fit_unsigned(scales.reshape(nb, 8), 63, sw)
        m_block, lm = fit_unsigned(mins.reshape(nb, 8), 63, sw)
        if nmax == 31:
            ls, lm = np.minimum(63, ls), np.minimum(63, lm)
        dh, mh = fp16_bits(d_block), fp16_bits(m_block)
    s = scale_min_k4(ls, lm)
    sc, mn = unpack_scale_min_k4(s)
    d = (col(fp16_value(dh)) * sc.astype(f32)).reshape(-1)
    dmin = (col(fp16_value(mh)) * mn.astype(f32)).reshape(-1)
    L = _requant_min(x, d, dmin, nmax, L).reshape(nb, 4, 2, 32).astype(np.uint8)
    head = [dh.reshape(-1, 1).view(np.uint8), mh.reshape(-1, 1).view(np.uint8), s]
    if nmax == 15:
        return np.concatenate(head + [pack_nibbles(L[:, :, 0], L[:, :, 1]).reshape(nb, 128)], axis=1)
    qh = (((L[:, :, 0] >> 4) & 1) << (2 * np.arange(4, dtype=np.uint8))[None, :, None]) | \
         (((L[:, :, 1] >> 4) & 1) << (2 * np.arange(4, dtype=np.uint8) + 1)[None, :, None])
    qh = qh.sum(axis=1, dtype=np.uint8)
    return np.concatenate(head + [qh, pack_nibbles(L[:, :, 0], L[:, :, 1]).reshape(nb, 128)], axis=1)


def q4_k(xr, qw):
    return _q45_k(xr, qw, 15)


def q5_k(xr, qw):
    return _q45_k(xr, qw, 31)


def q6_k(xr, qw):
    x = xr.reshape(-1, 16)
    nb = len(x) // 16
    w = None if qw is None else np.tile(qw.reshape(-1, 16), (len(xr), 1))
    scales, L = fit_signed(x, 32, w)
    scales = scales.reshape(nb, 16)
    max_abs, max_scale = first_absmax(scales)
    zero = max_abs < EPS
    with np.errstate(all="ignore"):
        iscale = f32(-128) / max_scale
        sc = np.minimum(127, rint(col(iscale) * scales)).astype(np.int8)
    dh = fp16_bits(np.where(zero, f32(0), f32(1) / iscale))
    d = (col(fp16_value(dh)) * sc.astype(f32)).reshape(-1)
    with np.errstate(all="ignore"):
        l = np.clip(rint(x / col(d)), -32, 31) + 32
    L = np.where(col(d) != 0, l, L).reshape(nb, 2, 4, 32).astype(np.uint8)
    ql = np.concatenate([pack_nibbles(L[:, :, 0], L[:, :, 2]), pack_nibbles(L[:, :, 1], L[:, :, 3])],
                        axis=2).reshape(nb, 128)
    qh = ((L[:, :, 0] >> 4) | ((L[:, :, 1] >> 4) << 2) | ((L[:, :, 2] >> 4) << 4) | ((L[:, :, 3] >> 4) << 6))
    out = np.concatenate([ql, qh.reshape(nb, 64), sc.view(np.uint8), dh.reshape(-1, 1).view(np.uint8)], axis=1)
    return np.where(col(zero), np.uint8(0), out).astype(np.uint8)


# --- IQ4_NL / IQ4_XS -------------------------------------------------------------------

def nearest_level(v: np.ndarray) -> np.ndarray:
    """Index of the IQ4 level nearest to v (the lower one on a tie)."""
    lv = IQ4_LEVELS.astype(f32)
    hi = np.clip(np.searchsorted(lv, v, side="right"), 1, 15)
    lower = (v - lv[hi - 1]) < (lv[hi] - v)
    idx = np.where(lower, hi - 1, hi)
    return np.where(v <= lv[0], 0, np.where(v >= lv[15], 15, idx))


def _iq4(xr, qw, sb: int):
    x = xr.reshape(-1, sb)
    nsb = len(x)
    xs = x.reshape(-1, 32)
    sigma2 = acc(x * x) * (f32(2) / f32(sb))
    if qw is None:
        w = xs * xs
    else:
        w = imatrix_weights(np.tile(qw.reshape(-1, 32), (len(xr), 1)), xs, np.repeat(sigma2, sb // 32))
    amax, mx = first_absmax(xs)
    vals = IQ4_LEVELS.astype(f32)
    with np.errstate(all="ignore"):
        d = -mx / vals[0]
        idv = f32(1) / d
        L = nearest_level(col(idv) * xs)
        q = vals[L]
        sumqx, sumq2 = acc(w * q * xs), acc(w * q * q)
        d = np.where(sumq2 > 0, sumqx / sumq2, f32(0))
        best = d * sumqx
        for itry in range(-7, 8):
            idv = f32(itry + int(IQ4_LEVELS[0])) / mx
            q = vals[nearest_level(col(idv) * xs)]
            sumqx, sumq2 = acc(w * q * xs), acc(w * q * q)
            upd = (sumq2 > 0) & (sumqx * sumqx > best * sumq2)
            d = np.where(upd, sumqx / sumq2, d)
            best = np.where(upd, d * sumqx, best)
        scales = np.where(amax < EPS, f32(0), d).astype(f32)
        if sb == 32:
            dh = fp16_bits(scales)
            idv = np.where(scales != 0, f32(1) / scales, f32(0))
            L = nearest_level(col(idv) * xs)
            return np.concatenate([dh.reshape(-1, 1).view(np.uint8), pack_nibbles(L[:, :16], L[:, 16:])], axis=1)
        sc = scales.reshape(nsb, sb // 32)
        amax_sc, max_scale = first_absmax(sc)
        max_scale = np.where(amax_sc > 0, max_scale, f32(0))     # all zero: +0, not a stored -0
        dsb = -max_scale / f32(32)
        idsb = np.where(dsb != 0, f32(1) / dsb, f32(0))
        l = np.clip(rint(col(idsb) * sc), -32, 31)
        dl = (col(dsb) * l.astype(f32)).reshape(-1)
        idl = np.where(dl != 0, f32(1) / dl, f32(0))
        L = nearest_level(col(idl) * xs)
    l = (l + 32).astype(np.uint16)
    scales_h = ((l >> 4) << (2 * np.arange(8, dtype=np.uint16))).sum(axis=1, dtype=np.uint16)
    lo = (l & 0xF).astype(np.uint8)
    scales_l = lo[:, 0::2] | (lo[:, 1::2] << 4)
    qs = pack_nibbles(L[:, :16], L[:, 16:]).reshape(nsb, sb // 2)
    return np.concatenate([fp16_bits(dsb).reshape(-1, 1).view(np.uint8), scales_h.reshape(-1, 1).view(np.uint8),
                           scales_l, qs], axis=1)


def iq4_nl(xr, qw):
    return _iq4(xr, qw, 32)


def iq4_xs(xr, qw):
    return _iq4(xr, qw, QK_K)


# --- entry point -----------------------------------------------------------------------

_FUNCS = {2: q4_0, 3: q4_1, 6: q5_0, 7: q5_1, 8: q8_0, 10: q2_k, 11: q3_k, 12: q4_k, 13: q5_k, 14: q6_k,
          20: iq4_nl, 23: iq4_xs}


def quantize(type_id: int, x: np.ndarray, imatrix: np.ndarray | None = None) -> np.ndarray:
    """float32 [rows, n_per_row] -> uint8 [rows, row_bytes] of the GGUF type (see the module doc)."""
    if type_id not in TYPES:
        raise ValueError(f"no reference quantizer for type {type_id}")
    name, block, size = TYPES[type_id]
    x = np.ascontiguousarray(x, dtype=f32)
    if x.ndim != 2 or x.shape[1] % block:
        raise ValueError(f"{name}: x must be [rows, n_per_row] with n_per_row a multiple of {block}")
    rows, n = x.shape
    if type_id == 1:
        return fp16_bits(x).view(np.uint8).reshape(rows, 2 * n)
    if type_id == 30:
        return bf16_bits(x).view(np.uint8).reshape(rows, 2 * n)
    qw = None if imatrix is None else np.ascontiguousarray(imatrix, dtype=f32)
    with np.errstate(all="ignore"):
        out = _FUNCS[type_id](x, qw)
    return np.ascontiguousarray(out, dtype=np.uint8).reshape(rows, n // block * size)
