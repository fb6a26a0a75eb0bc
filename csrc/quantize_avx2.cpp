// quantize_avx2.cpp - AVX2 versions of the hot parts of quantize.cpp that keep its bits.
//
// The scale searches work on sub-blocks that are independent of each other, so
// one 8-float vector holds 8 sub-blocks, one per lane, and each lane runs the
// scalar algorithm step for step: the same float32 operations in the same order
// (mul, add, div and sqrt are exact IEEE operations lane by lane; no FMA: the
// file is compiled with -ffp-contract=off and uses no FMA intrinsic), the same
// integer rounding (the 1.5 * 2^23 trick of round_nearest, including what it
// does with huge or NaN inputs), and masks where the scalar code branches.
//
// Built with -mavx2 -mfma -mf16c -mbmi2 only: plain functions on pointers, no
// STL and no inline helpers shared with the generic units (kernel_table.h, ODR).
#include <immintrin.h>

#include <cstdint>

#include "quant_blocks.h"
#include "quantize.h"

namespace ll {
namespace quant_avx2 {
namespace {

// round_nearest() of each lane: add 1.5 * 2^23, keep the low mantissa bits.
inline __m256i round_nearest8(__m256 v) {
  const __m256 t = _mm256_add_ps(v, _mm256_set1_ps(12582912.f));
  const __m256i b = _mm256_and_si256(_mm256_castps_si256(t), _mm256_set1_epi32(0x007fffff));
  return _mm256_sub_epi32(b, _mm256_set1_epi32(0x00400000));
}

inline __m256i clamp8(__m256i l, int lo, int hi) {
  return _mm256_min_epi32(_mm256_max_epi32(l, _mm256_set1_epi32(lo)), _mm256_set1_epi32(hi));
}

inline __m256 blend(__m256 a, __m256 b, __m256 mask) { return _mm256_blendv_ps(a, b, mask); }

inline __m256 absf(__m256 v) { return _mm256_andnot_ps(_mm256_set1_ps(-0.0f), v); }

// 8 rows of `n` floats, `stride` apart -> t[i * 8 + lane] = src[lane * stride + i].
void transpose_in(const float* src, int n, int stride, float* t) {
  for (int lane = 0; lane < 8; ++lane) {
    for (int i = 0; i < n; ++i) t[i * 8 + lane] = src[lane * stride + i];
  }
}

}  // namespace

namespace {

// The two min-and-scale searches of quantize.cpp, lane-wise on 8 sub-blocks of n
// (16 or 32) values given transposed (xt, wt: value i of lane k at [8 i + k]).
// weighted = false: fit_min_ref (|diff| errors when use_mad, else diff^2); true:
// fit_min_weighted.
void fit_min8(int n, const float* xt, const float* wt, int nmax, float rmin, float rdelta, int nstep,
              bool weighted, bool use_mad, float* scales_out, float* mins_out, uint8_t* L_out) {
  alignas(32) float Lt[32 * 8], La[32 * 8];
  const __m256 zero = _mm256_setzero_ps();
  __m256 mn = _mm256_load_ps(xt), mx = mn;
  __m256 sum_w = _mm256_load_ps(wt);
  __m256 sum_x = _mm256_mul_ps(sum_w, mn);
  for (int i = 1; i < n; ++i) {
    const __m256 v = _mm256_load_ps(xt + 8 * i), w = _mm256_load_ps(wt + 8 * i);
    mn = _mm256_min_ps(v, mn);  // v < mn ? v : mn
    mx = _mm256_max_ps(v, mx);  // v > mx ? v : mx
    sum_w = _mm256_add_ps(sum_w, w);
    sum_x = _mm256_add_ps(sum_x, _mm256_mul_ps(w, v));
  }
  mn = blend(mn, zero, _mm256_cmp_ps(mn, zero, _CMP_GT_OQ));
  const __m256 flat = weighted ? _mm256_cmp_ps(mx, mn, _CMP_LE_OQ) : _mm256_cmp_ps(mx, mn, _CMP_EQ_OQ);
  const __m256 mn0 = mn;
  const __m256 fnmax = _mm256_set1_ps((float)nmax);
  __m256 iscale = _mm256_div_ps(fnmax, _mm256_sub_ps(mx, mn));
  __m256 scale = _mm256_div_ps(_mm256_set1_ps(1.0f), iscale);
  __m256 best = zero;
  for (int i = 0; i < n; ++i) {
    const __m256 v = _mm256_load_ps(xt + 8 * i), w = _mm256_load_ps(wt + 8 * i);
    const __m256 l = _mm256_cvtepi32_ps(clamp8(round_nearest8(_mm256_mul_ps(iscale, _mm256_sub_ps(v, mn))), 0, nmax));
    _mm256_store_ps(Lt + 8 * i, l);
    __m256 diff = _mm256_sub_ps(_mm256_add_ps(_mm256_mul_ps(scale, l), mn), v);
    diff = use_mad ? absf(diff) : _mm256_mul_ps(diff, diff);
    best = _mm256_add_ps(best, _mm256_mul_ps(w, diff));
  }
  for (int is = 0; is <= nstep; ++is) {
    const float num = rmin + rdelta * (float)is + (float)nmax;
    iscale = _mm256_div_ps(_mm256_set1_ps(num), _mm256_sub_ps(mx, mn));
    __m256 sum_l = zero, sum_l2 = zero, sum_xl = zero;
    for (int i = 0; i < n; ++i) {
      const __m256 v = _mm256_load_ps(xt + 8 * i), w = _mm256_load_ps(wt + 8 * i);
      const __m256 p = _mm256_mul_ps(iscale, _mm256_sub_ps(v, mn));
      __m256 l;
      if (weighted) {  // p > 0 ? round(min(p, nmax)) : 0
        l = _mm256_cvtepi32_ps(round_nearest8(_mm256_min_ps(p, fnmax)));
        l = _mm256_and_ps(l, _mm256_cmp_ps(p, zero, _CMP_GT_OQ));
      } else {
        l = _mm256_cvtepi32_ps(clamp8(round_nearest8(p), 0, nmax));
      }
      _mm256_store_ps(La + 8 * i, l);
      const __m256 wl = _mm256_mul_ps(w, l);
      sum_l = _mm256_add_ps(sum_l, wl);
      sum_l2 = _mm256_add_ps(sum_l2, _mm256_mul_ps(wl, l));
      sum_xl = _mm256_add_ps(sum_xl, _mm256_mul_ps(wl, v));
    }
    const __m256 D = _mm256_sub_ps(_mm256_mul_ps(sum_w, sum_l2), _mm256_mul_ps(sum_l, sum_l));
    const __m256 dpos = _mm256_cmp_ps(D, zero, _CMP_GT_OQ);
    if (_mm256_movemask_ps(dpos) == 0) continue;
    __m256 this_scale = _mm256_div_ps(_mm256_sub_ps(_mm256_mul_ps(sum_w, sum_xl), _mm256_mul_ps(sum_x, sum_l)), D);
    __m256 this_min = _mm256_div_ps(_mm256_sub_ps(_mm256_mul_ps(sum_l2, sum_x), _mm256_mul_ps(sum_l, sum_xl)), D);
    const __m256 mpos = _mm256_cmp_ps(this_min, zero, _CMP_GT_OQ);
    this_min = blend(this_min, zero, mpos);
    this_scale = blend(this_scale, _mm256_div_ps(sum_xl, sum_l2), mpos);
    __m256 cur = zero;
    for (int i = 0; i < n; ++i) {
      const __m256 v = _mm256_load_ps(xt + 8 * i), w = _mm256_load_ps(wt + 8 * i);
      __m256 diff = _mm256_sub_ps(_mm256_add_ps(_mm256_mul_ps(this_scale, _mm256_load_ps(La + 8 * i)), this_min), v);
      diff = use_mad ? absf(diff) : _mm256_mul_ps(diff, diff);
      cur = _mm256_add_ps(cur, _mm256_mul_ps(w, diff));
    }
    const __m256 upd = _mm256_and_ps(dpos, _mm256_cmp_ps(cur, best, _CMP_LT_OQ));
    if (_mm256_movemask_ps(upd) == 0) continue;
    for (int i = 0; i < n; ++i) {
      _mm256_store_ps(Lt + 8 * i, blend(_mm256_load_ps(Lt + 8 * i), _mm256_load_ps(La + 8 * i), upd));
    }
    best = blend(best, cur, upd);
    scale = blend(scale, this_scale, upd);
    mn = blend(mn, this_min, upd);
  }
  // Flat sub-blocks: no levels, scale 0, the (clamped) minimum as it was.
  scale = blend(scale, zero, flat);
  mn = blend(mn, mn0, flat);
  alignas(32) float s8[8], m8[8], f8[8];
  _mm256_store_ps(s8, scale);
  _mm256_store_ps(m8, _mm256_xor_ps(mn, _mm256_set1_ps(-0.0f)));  // the_min = -min
  _mm256_store_ps(f8, flat);
  for (int lane = 0; lane < 8; ++lane) {
    scales_out[lane] = s8[lane];
    mins_out[lane] = m8[lane];
    const bool is_flat = f8[lane] != 0.0f;
    for (int i = 0; i < n; ++i) L_out[lane * n + i] = is_flat ? 0 : (uint8_t)(int)Lt[i * 8 + lane];
  }
}

}  // namespace

void k4_ref_fit(const float* x, int nmax, float rmin, int nstep, float* scales_out, float* mins_out,
                uint8_t* L_out) {
  alignas(32) float xt[32 * 8], wt[32 * 8];
  transpose_in(x, 32, 32, xt);
  // weights: av_x + |x| with av_x = sqrt(sum x^2 / 32)
  __m256 sum_x2 = _mm256_setzero_ps();
  for (int i = 0; i < 32; ++i) {
    const __m256 v = _mm256_load_ps(xt + 8 * i);
    sum_x2 = _mm256_add_ps(sum_x2, _mm256_mul_ps(v, v));
  }
  const __m256 av_x = _mm256_sqrt_ps(_mm256_div_ps(sum_x2, _mm256_set1_ps(32.0f)));
  for (int i = 0; i < 32; ++i) _mm256_store_ps(wt + 8 * i, _mm256_add_ps(av_x, absf(_mm256_load_ps(xt + 8 * i))));
  fit_min8(32, xt, wt, nmax, rmin, 0.1f, nstep, false, false, scales_out, mins_out, L_out);
}

void fit_min_weighted_x8(int n, const float* x, const float* w, int nmax, float* scales, float* mins, uint8_t* L) {
  alignas(32) float xt[32 * 8] = {}, wt[32 * 8] = {};  // n = 16 fills half
  transpose_in(x, n, n, xt);
  transpose_in(w, n, n, wt);
  fit_min8(n, xt, wt, nmax, -0.9f, 0.05f, 36, true, false, scales, mins, L);
}

void q2_k_ref_fit(const float* x, float* scales, float* mins, uint8_t* L) {
  alignas(32) float xt[16 * 8], wt[16 * 8];
  transpose_in(x, 16, 16, xt);
  for (int i = 0; i < 16; ++i) _mm256_store_ps(wt + 8 * i, absf(_mm256_load_ps(xt + 8 * i)));
  fit_min8(16, xt, wt, 3, -0.5f, 0.1f, 15, false, true, scales, mins, L);
}

void signed_fit_x8(int n, const float* x, const float* qw, int nmax, float* scales_out, int8_t* L_out) {
  alignas(32) float xt[32 * 8] = {}, wt[32 * 8] = {};  // n = 16 fills half
  alignas(32) int32_t Lt[32 * 8];
  transpose_in(x, n, n, xt);
  if (qw) transpose_in(qw, n, n, wt);
  else
    for (int i = 0; i < n * 8; ++i) wt[i] = xt[i] * xt[i];
  const __m256 zero = _mm256_setzero_ps();
  __m256 amax = zero, mx = zero;
  for (int i = 0; i < n; ++i) {
    const __m256 v = _mm256_load_ps(xt + 8 * i);
    const __m256 gt = _mm256_cmp_ps(absf(v), amax, _CMP_GT_OQ);
    amax = blend(amax, absf(v), gt);
    mx = blend(mx, v, gt);
  }
  __m256 iscale = _mm256_div_ps(_mm256_set1_ps((float)(-nmax)), mx);
  __m256 sumlx = zero, suml2 = zero;
  for (int i = 0; i < n; ++i) {
    const __m256 v = _mm256_load_ps(xt + 8 * i), w = _mm256_load_ps(wt + 8 * i);
    const __m256i li = clamp8(round_nearest8(_mm256_mul_ps(iscale, v)), -nmax, nmax - 1);
    _mm256_store_si256(reinterpret_cast<__m256i*>(Lt + 8 * i), li);
    const __m256 l = _mm256_cvtepi32_ps(li);
    sumlx = _mm256_add_ps(sumlx, _mm256_mul_ps(_mm256_mul_ps(w, v), l));
    suml2 = _mm256_add_ps(suml2, _mm256_mul_ps(_mm256_mul_ps(w, l), l));
  }
  // suml2 ? sumlx / suml2 : 0 (a NaN counts as true, as in C)
  __m256 scale = blend(zero, _mm256_div_ps(sumlx, suml2), _mm256_cmp_ps(suml2, zero, _CMP_NEQ_UQ));
  __m256 best = _mm256_mul_ps(scale, sumlx);
  for (int is = -9; is <= 9; ++is) {
    if (is == 0) continue;
    const float num = -((float)nmax + 0.1f * (float)is);
    iscale = _mm256_div_ps(_mm256_set1_ps(num), mx);
    __m256i lv[32];
    sumlx = suml2 = zero;
    for (int i = 0; i < n; ++i) {
      const __m256 v = _mm256_load_ps(xt + 8 * i), w = _mm256_load_ps(wt + 8 * i);
      lv[i] = clamp8(round_nearest8(_mm256_mul_ps(iscale, v)), -nmax, nmax - 1);
      const __m256 l = _mm256_cvtepi32_ps(lv[i]);
      sumlx = _mm256_add_ps(sumlx, _mm256_mul_ps(_mm256_mul_ps(w, v), l));
      suml2 = _mm256_add_ps(suml2, _mm256_mul_ps(_mm256_mul_ps(w, l), l));
    }
    const __m256 upd = _mm256_and_ps(_mm256_cmp_ps(suml2, zero, _CMP_GT_OQ),
                                     _mm256_cmp_ps(_mm256_mul_ps(sumlx, sumlx), _mm256_mul_ps(best, suml2), _CMP_GT_OQ));
    if (_mm256_movemask_ps(upd) == 0) continue;
    const __m256i updi = _mm256_castps_si256(upd);
    for (int i = 0; i < n; ++i) {
      __m256i* p = reinterpret_cast<__m256i*>(Lt + 8 * i);
      _mm256_store_si256(p, _mm256_blendv_epi8(_mm256_load_si256(p), lv[i], updi));
    }
    scale = blend(scale, _mm256_div_ps(sumlx, suml2), upd);
    best = blend(best, _mm256_mul_ps(scale, sumlx), upd);
  }
  const __m256 zero_lane = _mm256_cmp_ps(amax, _mm256_set1_ps(1e-15f), _CMP_LT_OQ);
  scale = blend(scale, zero, zero_lane);
  alignas(32) float s8[8], z8[8];
  _mm256_store_ps(s8, scale);
  _mm256_store_ps(z8, zero_lane);
  for (int lane = 0; lane < 8; ++lane) {
    scales_out[lane] = s8[lane];
    const bool z = z8[lane] != 0.0f;
    for (int i = 0; i < n; ++i) L_out[lane * n + i] = z ? 0 : (int8_t)(Lt[i * 8 + lane] + nmax);
  }
}

void q3_k_ref_fit(const float* x, float* scales_out, int8_t* L_out) {
  constexpr int nmax = 4;
  alignas(32) float xt[16 * 8];
  __m256i Lv[16];
  transpose_in(x, 16, 16, xt);
  const __m256 zero = _mm256_setzero_ps();
  __m256 amax = zero, mx = zero;
  for (int i = 0; i < 16; ++i) {
    const __m256 v = _mm256_load_ps(xt + 8 * i);
    const __m256 gt = _mm256_cmp_ps(absf(v), amax, _CMP_GT_OQ);
    amax = blend(amax, absf(v), gt);
    mx = blend(mx, v, gt);
  }
  const __m256 iscale = _mm256_div_ps(_mm256_set1_ps((float)(-nmax)), mx);
  __m256 sumlx = zero, suml2 = zero;
  for (int i = 0; i < 16; ++i) {
    const __m256 v = _mm256_load_ps(xt + 8 * i);
    Lv[i] = clamp8(round_nearest8(_mm256_mul_ps(iscale, v)), -nmax, nmax - 1);
    const __m256 l = _mm256_cvtepi32_ps(Lv[i]), w = _mm256_mul_ps(v, v);
    sumlx = _mm256_add_ps(sumlx, _mm256_mul_ps(_mm256_mul_ps(w, v), l));
    suml2 = _mm256_add_ps(suml2, _mm256_mul_ps(_mm256_mul_ps(w, l), l));
  }
  // Up to 5 rounds of single-value moves; a lane stops after a round without one.
  __m256 active = _mm256_castsi256_ps(_mm256_set1_epi32(-1));
  for (int itry = 0; itry < 5; ++itry) {
    __m256 changed = zero;
    for (int i = 0; i < 16; ++i) {
      const __m256 v = _mm256_load_ps(xt + 8 * i);
      const __m256 w = _mm256_mul_ps(v, v), wx = _mm256_mul_ps(w, v);
      const __m256 li = _mm256_cvtepi32_ps(Lv[i]);
      __m256 slx = _mm256_sub_ps(sumlx, _mm256_mul_ps(wx, li));
      __m256 sl2 = _mm256_sub_ps(suml2, _mm256_mul_ps(_mm256_mul_ps(w, li), li));
      const __m256i nl = clamp8(round_nearest8(_mm256_div_ps(_mm256_mul_ps(v, sl2), slx)), -nmax, nmax - 1);
      const __m256 nf = _mm256_cvtepi32_ps(nl);
      const __m256 ne = _mm256_castsi256_ps(_mm256_xor_si256(_mm256_cmpeq_epi32(nl, Lv[i]), _mm256_set1_epi32(-1)));
      const __m256 slx2 = _mm256_add_ps(slx, _mm256_mul_ps(wx, nf));
      const __m256 sl22 = _mm256_add_ps(sl2, _mm256_mul_ps(_mm256_mul_ps(w, nf), nf));
      __m256 ok = _mm256_and_ps(active, _mm256_cmp_ps(slx, zero, _CMP_GT_OQ));
      ok = _mm256_and_ps(ok, ne);
      ok = _mm256_and_ps(ok, _mm256_cmp_ps(sl22, zero, _CMP_GT_OQ));
      ok = _mm256_and_ps(ok, _mm256_cmp_ps(_mm256_mul_ps(_mm256_mul_ps(slx2, slx2), suml2),
                                           _mm256_mul_ps(_mm256_mul_ps(sumlx, sumlx), sl22), _CMP_GT_OQ));
      Lv[i] = _mm256_blendv_epi8(Lv[i], nl, _mm256_castps_si256(ok));
      sumlx = blend(sumlx, slx2, ok);
      suml2 = blend(suml2, sl22, ok);
      changed = _mm256_or_ps(changed, ok);
    }
    active = _mm256_and_ps(active, changed);
    if (_mm256_movemask_ps(active) == 0) break;
  }
  __m256 scale = blend(zero, _mm256_div_ps(sumlx, suml2), _mm256_cmp_ps(suml2, zero, _CMP_GT_OQ));
  const __m256 zero_lane = _mm256_cmp_ps(amax, _mm256_set1_ps(1e-15f), _CMP_LT_OQ);
  scale = blend(scale, zero, zero_lane);
  alignas(32) float s8[8], z8[8];
  alignas(32) int32_t l8[8];
  _mm256_store_ps(s8, scale);
  _mm256_store_ps(z8, zero_lane);
  for (int lane = 0; lane < 8; ++lane) scales_out[lane] = s8[lane];
  for (int i = 0; i < 16; ++i) {
    _mm256_store_si256(reinterpret_cast<__m256i*>(l8), Lv[i]);
    for (int lane = 0; lane < 8; ++lane) L_out[lane * 16 + i] = z8[lane] != 0.0f ? 0 : (int8_t)(l8[lane] + nmax);
  }
}

namespace {

// The 16 IQ4 levels as floats, in two halves for the 8-lane table lookups.
alignas(32) const float kLevelsLo[8] = {-127, -104, -83, -65, -49, -35, -22, -10};
alignas(32) const float kLevelsHi[8] = {1, 13, 25, 38, 53, 69, 89, 113};

// levels[idx] for idx in 0..15.
inline __m256 level_of(__m256i idx) {
  const __m256 lo = _mm256_permutevar8x32_ps(_mm256_load_ps(kLevelsLo), idx);
  const __m256 hi = _mm256_permutevar8x32_ps(_mm256_load_ps(kLevelsHi), idx);
  const __m256 use_hi = _mm256_castsi256_ps(_mm256_cmpgt_epi32(idx, _mm256_set1_epi32(7)));
  return _mm256_blendv_ps(lo, hi, use_hi);
}

// nearest_level() of each lane: the bisection ends between the levels
// mu - 1 and mu where mu counts the levels <= v; ties go to the lower one; at or
// beyond the ends 0 or 15, and a NaN ends at 15 as the scalar bisection does.
inline __m256i nearest_level8(__m256 v) {
  __m256i cnt = _mm256_setzero_si256();
  for (int k = 0; k < 8; ++k) {
    cnt = _mm256_sub_epi32(cnt, _mm256_castps_si256(_mm256_cmp_ps(_mm256_set1_ps(kLevelsLo[k]), v, _CMP_LE_OQ)));
    cnt = _mm256_sub_epi32(cnt, _mm256_castps_si256(_mm256_cmp_ps(_mm256_set1_ps(kLevelsHi[k]), v, _CMP_LE_OQ)));
  }
  const __m256i mu = clamp8(cnt, 1, 15);
  const __m256i mu1 = _mm256_sub_epi32(mu, _mm256_set1_epi32(1));
  const __m256 lower = _mm256_cmp_ps(_mm256_sub_ps(v, level_of(mu1)), _mm256_sub_ps(level_of(mu), v), _CMP_LT_OQ);
  __m256i r = _mm256_blendv_epi8(mu, mu1, _mm256_castps_si256(lower));
  const __m256 at_lo = _mm256_cmp_ps(v, _mm256_set1_ps(-127.0f), _CMP_LE_OQ);
  const __m256 at_hi = _mm256_or_ps(_mm256_cmp_ps(v, _mm256_set1_ps(113.0f), _CMP_GE_OQ), _mm256_cmp_ps(v, v, _CMP_UNORD_Q));
  r = _mm256_andnot_si256(_mm256_castps_si256(at_lo), r);
  return _mm256_blendv_epi8(r, _mm256_set1_epi32(15), _mm256_castps_si256(at_hi));
}

}  // namespace

void iq4_scales_x8(const float* x, const float* w, float* scales_out) {
  alignas(32) float xt[32 * 8], wt[32 * 8];
  transpose_in(x, 32, 32, xt);
  transpose_in(w, 32, 32, wt);
  const __m256 zero = _mm256_setzero_ps();
  __m256 amax = zero, mx = zero;
  for (int i = 0; i < 32; ++i) {
    const __m256 v = _mm256_load_ps(xt + 8 * i);
    const __m256 gt = _mm256_cmp_ps(absf(v), amax, _CMP_GT_OQ);
    amax = blend(amax, absf(v), gt);
    mx = blend(mx, v, gt);
  }
  auto sums = [&](__m256 id, __m256* sumqx, __m256* sumq2) {
    __m256 a = zero, b = zero;
    for (int i = 0; i < 32; ++i) {
      const __m256 v = _mm256_load_ps(xt + 8 * i), wv = _mm256_load_ps(wt + 8 * i);
      const __m256 q = level_of(nearest_level8(_mm256_mul_ps(id, v)));
      const __m256 wq = _mm256_mul_ps(wv, q);
      a = _mm256_add_ps(a, _mm256_mul_ps(wq, v));
      b = _mm256_add_ps(b, _mm256_mul_ps(wq, q));
    }
    *sumqx = a;
    *sumq2 = b;
  };
  __m256 d = _mm256_div_ps(_mm256_xor_ps(mx, _mm256_set1_ps(-0.0f)), _mm256_set1_ps(-127.0f));  // -max / -127
  __m256 sumqx, sumq2;
  sums(_mm256_div_ps(_mm256_set1_ps(1.0f), d), &sumqx, &sumq2);
  d = blend(zero, _mm256_div_ps(sumqx, sumq2), _mm256_cmp_ps(sumq2, zero, _CMP_GT_OQ));
  __m256 best = _mm256_mul_ps(d, sumqx);
  for (int itry = -7; itry <= 7; ++itry) {
    sums(_mm256_div_ps(_mm256_set1_ps((float)(itry - 127)), mx), &sumqx, &sumq2);
    const __m256 upd = _mm256_and_ps(_mm256_cmp_ps(sumq2, zero, _CMP_GT_OQ),
                                     _mm256_cmp_ps(_mm256_mul_ps(sumqx, sumqx), _mm256_mul_ps(best, sumq2), _CMP_GT_OQ));
    d = blend(d, _mm256_div_ps(sumqx, sumq2), upd);
    best = blend(best, _mm256_mul_ps(d, sumqx), upd);
  }
  d = blend(d, zero, _mm256_cmp_ps(amax, _mm256_set1_ps(1e-15f), _CMP_LT_OQ));
  _mm256_storeu_ps(scales_out, d);
}

void q8_0_blocks(const float* x, void* dst, int64_t nb, uint16_t (*to_fp16)(float)) {
  BlockQ8_0* y = static_cast<BlockQ8_0*>(dst);
  const __m256 half = _mm256_set1_ps(0.5f), sign = _mm256_set1_ps(-0.0f);
  for (int64_t i = 0; i < nb; i++, x += QK32) {
    __m256 v[4];
    __m256 m = _mm256_setzero_ps();
    for (int k = 0; k < 4; ++k) {
      v[k] = _mm256_loadu_ps(x + 8 * k);
      m = _mm256_max_ps(m, absf(v[k]));
    }
    __m128 h = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
    h = _mm_max_ps(h, _mm_movehl_ps(h, h));
    h = _mm_max_ss(h, _mm_shuffle_ps(h, h, 1));
    const float amax = _mm_cvtss_f32(h);
    const float d = amax / 127.0f;
    const float id = d ? 1.0f / d : 0.0f;
    // F16C rounds as to_fp16 (to nearest even) for every non-NaN value
    y[i].d = d == d ? (uint16_t)_cvtss_sh(d, _MM_FROUND_TO_NEAREST_INT) : to_fp16(d);
    const __m256 vid = _mm256_set1_ps(id);
    __m256i q[4];
    for (int k = 0; k < 4; ++k) {
      // roundf: truncate, then step away from zero when the dropped part is >= 0.5
      const __m256 p = _mm256_mul_ps(v[k], vid);
      const __m256 t = _mm256_round_ps(p, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
      const __m256 up = _mm256_cmp_ps(absf(_mm256_sub_ps(p, t)), half, _CMP_GE_OQ);
      const __m256 one = _mm256_or_ps(_mm256_and_ps(p, sign), _mm256_set1_ps(1.0f));
      q[k] = _mm256_cvttps_epi32(_mm256_add_ps(t, _mm256_and_ps(up, one)));
    }
    const __m256i p01 = _mm256_packs_epi32(q[0], q[1]), p23 = _mm256_packs_epi32(q[2], q[3]);
    __m256i b = _mm256_packs_epi16(p01, p23);
    b = _mm256_permutevar8x32_epi32(b, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(y[i].qs), b);
  }
}

void f16_row(const float* x, uint16_t* y, int64_t n, uint16_t (*to_fp16)(float)) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 v = _mm256_loadu_ps(x + i);
    const __m256 nan = _mm256_cmp_ps(v, v, _CMP_UNORD_Q);
    if (_mm256_movemask_ps(nan)) {
      for (int k = 0; k < 8; ++k) y[i + k] = to_fp16(x[i + k]);
      continue;
    }
    _mm_storeu_si128(reinterpret_cast<__m128i*>(y + i), _mm256_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT));
  }
  for (; i < n; ++i) y[i] = to_fp16(x[i]);
}

void f16_to_f32_row(const uint16_t* x, float* y, int64_t n, float (*to_fp32)(uint16_t)) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 v = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(x + i)));
    if (_mm256_movemask_ps(_mm256_cmp_ps(v, v, _CMP_UNORD_Q))) {
      for (int k = 0; k < 8; ++k) y[i + k] = to_fp32(x[i + k]);
      continue;
    }
    _mm256_storeu_ps(y + i, v);
  }
  for (; i < n; ++i) y[i] = to_fp32(x[i]);
}

}  // namespace quant_avx2
}  // namespace ll
