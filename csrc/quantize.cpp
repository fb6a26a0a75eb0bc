// quantize.cpp - the block quantizers (see quantize.h).
//
// Bit identity with llama.cpp needs the same float32 operations in the same
// order: every sum below runs element by element as in ggml-quants.c, products
// keep its association ((w * x) * l, not w * (x * l)), integer factors are
// converted to float where it converts them, and the file is compiled with
// -ffp-contract=off (cmake/isa_flags.cmake) so no a * b + c becomes one FMA:
// llama.cpp's ggml-base, where these quantizers live, is built for the x86-64
// baseline, which has no FMA to contract into.
#include "quantize.h"

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <string>

#include "kernels.h"
#include "kv_cache.h"  // fp32_to_fp16 (ggml's rounding: to nearest even, NaN -> 0x7E00)
#include "quant_blocks.h"
#include "scalar_util.h"
#include "threadpool.h"

namespace ll {

namespace {

#if defined(__x86_64__) || defined(_M_X64) || defined(__i386__)
// quantize_avx2.cpp is built (cmake/isa_flags.cmake); use it when the active ISA has AVX2.
inline bool use_avx2() { return active_isa() != ISA::generic; }
#else
inline bool use_avx2() { return false; }
#endif

}  // namespace

#if !(defined(__x86_64__) || defined(_M_X64) || defined(__i386__))
// Off x86 quantize_avx2.cpp is not built and use_avx2() is false, so these are never
// called; they exist for unoptimised builds, which keep the calls behind the branch.
namespace quant_avx2 {
void k4_ref_fit(const float*, int, float, int, float*, float*, uint8_t*) { std::abort(); }
void fit_min_weighted_x8(int, const float*, const float*, int, float*, float*, uint8_t*) { std::abort(); }
void q2_k_ref_fit(const float*, float*, float*, uint8_t*) { std::abort(); }
void signed_fit_x8(int, const float*, const float*, int, float*, int8_t*) { std::abort(); }
void q3_k_ref_fit(const float*, float*, int8_t*) { std::abort(); }
void iq4_scales_x8(const float*, const float*, float*) { std::abort(); }
void q8_0_blocks(const float*, void*, int64_t, uint16_t (*)(float)) { std::abort(); }
void f16_row(const float*, uint16_t*, int64_t, uint16_t (*)(float)) { std::abort(); }
void f16_to_f32_row(const uint16_t*, float*, int64_t, float (*)(uint16_t)) { std::abort(); }
}  // namespace quant_avx2
#endif

namespace {

// Below this a group's largest magnitude counts as zero (ggml's GROUP_MAX_EPS).
constexpr float kGroupEps = 1e-15f;

// The 16 levels of IQ4_NL and IQ4_XS.
constexpr int8_t kIQ4Levels[16] = {-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113};

// Round to the nearest integer, ties to even, for |f| < 2^22: adding 1.5 * 2^23
// leaves the rounded integer in the low mantissa bits.
inline int round_nearest(float f) {
  float v = f + 12582912.f;
  int32_t bits;
  std::memcpy(&bits, &v, 4);
  return (bits & 0x007fffff) - 0x00400000;
}

inline float fp16_value(uint16_t h) { return fp16_to_fp32(h); }

// --- the scale searches ---------------------------------------------------------

// Signed levels -nmax..nmax-1 with one scale, fitted by weighted least squares
// over 19 candidate inverse scales around -nmax / max. w = qw[i], or x[i]^2 when
// qw is null. L gets level + nmax. Returns the scale.
float fit_signed(int n, int nmax, const float* x, int8_t* L, const float* qw) {
  float max = 0, amax = 0;
  for (int i = 0; i < n; ++i) {
    float ax = std::fabs(x[i]);
    if (ax > amax) { amax = ax; max = x[i]; }
  }
  if (amax < kGroupEps) {
    for (int i = 0; i < n; ++i) L[i] = 0;
    return 0.f;
  }
  float iscale = (float)(-nmax) / max;
  float sumlx = 0, suml2 = 0;
  for (int i = 0; i < n; ++i) {
    int l = round_nearest(iscale * x[i]);
    l = std::max(-nmax, std::min(nmax - 1, l));
    L[i] = (int8_t)(l + nmax);
    float w = qw ? qw[i] : x[i] * x[i];
    sumlx += w * x[i] * (float)l;
    suml2 += w * (float)l * (float)l;
  }
  float scale = suml2 ? sumlx / suml2 : 0.0f;
  float best = scale * sumlx;
  for (int is = -9; is <= 9; ++is) {
    if (is == 0) continue;
    iscale = -((float)nmax + 0.1f * (float)is) / max;
    sumlx = suml2 = 0;
    for (int i = 0; i < n; ++i) {
      int l = round_nearest(iscale * x[i]);
      l = std::max(-nmax, std::min(nmax - 1, l));
      float w = qw ? qw[i] : x[i] * x[i];
      sumlx += w * x[i] * (float)l;
      suml2 += w * (float)l * (float)l;
    }
    if (suml2 > 0 && sumlx * sumlx > best * suml2) {
      for (int i = 0; i < n; ++i) {
        int l = round_nearest(iscale * x[i]);
        L[i] = (int8_t)(nmax + std::max(-nmax, std::min(nmax - 1, l)));
      }
      scale = sumlx / suml2;
      best = scale * sumlx;
    }
  }
  return scale;
}

// Q3_K's unweighted search: signed levels -nmax..nmax-1, then up to 5 rounds of
// moving single values to a better level (weights x^2). L gets level + nmax.
float fit_signed_q3(int n, int nmax, const float* x, int8_t* L) {
  float max = 0, amax = 0;
  for (int i = 0; i < n; ++i) {
    float ax = std::fabs(x[i]);
    if (ax > amax) { amax = ax; max = x[i]; }
  }
  if (amax < kGroupEps) {
    for (int i = 0; i < n; ++i) L[i] = 0;
    return 0.f;
  }
  float iscale = (float)(-nmax) / max;
  float sumlx = 0, suml2 = 0;
  for (int i = 0; i < n; ++i) {
    int l = round_nearest(iscale * x[i]);
    l = std::max(-nmax, std::min(nmax - 1, l));
    L[i] = (int8_t)l;
    float w = x[i] * x[i];
    sumlx += w * x[i] * (float)l;
    suml2 += w * (float)l * (float)l;
  }
  for (int itry = 0; itry < 5; ++itry) {
    int n_changed = 0;
    for (int i = 0; i < n; ++i) {
      float w = x[i] * x[i];
      float slx = sumlx - w * x[i] * (float)L[i];
      if (slx > 0) {
        float sl2 = suml2 - w * (float)L[i] * (float)L[i];
        int new_l = round_nearest(x[i] * sl2 / slx);
        new_l = std::max(-nmax, std::min(nmax - 1, new_l));
        if (new_l != L[i]) {
          slx += w * x[i] * (float)new_l;
          sl2 += w * (float)new_l * (float)new_l;
          if (sl2 > 0 && slx * slx * suml2 > sumlx * sumlx * sl2) {
            L[i] = (int8_t)new_l;
            sumlx = slx;
            suml2 = sl2;
            ++n_changed;
          }
        }
      }
    }
    if (!n_changed) break;
  }
  for (int i = 0; i < n; ++i) L[i] = (int8_t)(L[i] + nmax);
  return suml2 > 0.0f ? sumlx / suml2 : 0.0f;
}

// Levels 0..nmax with a scale and a minimum (x ~ scale * L - the_min): a grid of
// nstep + 1 inverse scales from (rmin + nmax) / range in rdelta steps, each
// refitted by weighted least squares, keeping the lowest weighted error
// (|diff| when use_mad, diff^2 otherwise). The reference K-quant path.
float fit_min_ref(int n, int nmax, const float* x, const float* weights, uint8_t* L, float* the_min,
                  uint8_t* Laux, float rmin, float rdelta, int nstep, bool use_mad) {
  float min = x[0], max = x[0];
  float sum_w = weights[0];
  float sum_x = sum_w * x[0];
  for (int i = 1; i < n; ++i) {
    if (x[i] < min) min = x[i];
    if (x[i] > max) max = x[i];
    float w = weights[i];
    sum_w += w;
    sum_x += w * x[i];
  }
  if (min > 0) min = 0;
  if (max == min) {
    for (int i = 0; i < n; ++i) L[i] = 0;
    *the_min = -min;
    return 0.f;
  }
  float iscale = (float)nmax / (max - min);
  float scale = 1.0f / iscale;
  float best_error = 0;
  for (int i = 0; i < n; ++i) {
    int l = round_nearest(iscale * (x[i] - min));
    L[i] = (uint8_t)std::max(0, std::min(nmax, l));
    float diff = scale * (float)L[i] + min - x[i];
    diff = use_mad ? std::fabs(diff) : diff * diff;
    best_error += weights[i] * diff;
  }
  if (nstep < 1) {
    *the_min = -min;
    return scale;
  }
  for (int is = 0; is <= nstep; ++is) {
    iscale = (rmin + rdelta * (float)is + (float)nmax) / (max - min);
    float sum_l = 0, sum_l2 = 0, sum_xl = 0;
    for (int i = 0; i < n; ++i) {
      int l = round_nearest(iscale * (x[i] - min));
      l = std::max(0, std::min(nmax, l));
      Laux[i] = (uint8_t)l;
      float w = weights[i];
      sum_l += w * (float)l;
      sum_l2 += w * (float)l * (float)l;
      sum_xl += w * (float)l * x[i];
    }
    float D = sum_w * sum_l2 - sum_l * sum_l;
    if (D > 0) {
      float this_scale = (sum_w * sum_xl - sum_x * sum_l) / D;
      float this_min = (sum_l2 * sum_x - sum_l * sum_xl) / D;
      if (this_min > 0) {
        this_min = 0;
        this_scale = sum_xl / sum_l2;
      }
      float cur_error = 0;
      for (int i = 0; i < n; ++i) {
        float diff = this_scale * (float)Laux[i] + this_min - x[i];
        diff = use_mad ? std::fabs(diff) : diff * diff;
        cur_error += weights[i] * diff;
      }
      if (cur_error < best_error) {
        for (int i = 0; i < n; ++i) L[i] = Laux[i];
        best_error = cur_error;
        scale = this_scale;
        min = this_min;
      }
    }
  }
  *the_min = -min;
  return scale;
}

// The weighted variant of fit_min_ref used with an importance matrix (and by
// Q4_1 / Q5_1 there): same grid, but guards the level computation against a
// minimum near the maximum and stops when max <= min.
float fit_min_weighted(int n, int nmax, const float* x, const float* weights, uint8_t* L, float* the_min,
                       uint8_t* Laux, float rmin, float rdelta, int nstep) {
  float min = x[0], max = x[0];
  float sum_w = weights[0];
  float sum_x = sum_w * x[0];
  for (int i = 1; i < n; ++i) {
    if (x[i] < min) min = x[i];
    if (x[i] > max) max = x[i];
    float w = weights[i];
    sum_w += w;
    sum_x += w * x[i];
  }
  if (min > 0) min = 0;
  if (max <= min) {
    std::memset(L, 0, n);
    *the_min = -min;
    return 0.f;
  }
  float iscale = (float)nmax / (max - min);
  float scale = 1.0f / iscale;
  float best_err = 0;
  for (int i = 0; i < n; ++i) {
    int l = round_nearest(iscale * (x[i] - min));
    L[i] = (uint8_t)std::max(0, std::min(nmax, l));
    float diff = scale * (float)L[i] + min - x[i];
    diff = diff * diff;
    best_err += weights[i] * diff;
  }
  for (int is = 0; is <= nstep; ++is) {
    iscale = (rmin + rdelta * (float)is + (float)nmax) / (max - min);
    float sum_l = 0, sum_l2 = 0, sum_xl = 0;
    for (int i = 0; i < n; ++i) {
      // inf, NaN or huge when min sits at max: clamp before rounding.
      const float v = iscale * (x[i] - min);
      const int l = v > 0 ? round_nearest(std::min(v, (float)nmax)) : 0;
      Laux[i] = (uint8_t)l;
      float w = weights[i];
      sum_l += w * (float)l;
      sum_l2 += w * (float)l * (float)l;
      sum_xl += w * (float)l * x[i];
    }
    float D = sum_w * sum_l2 - sum_l * sum_l;
    if (D > 0) {
      float this_scale = (sum_w * sum_xl - sum_x * sum_l) / D;
      float this_min = (sum_l2 * sum_x - sum_l * sum_xl) / D;
      if (this_min > 0) {
        this_min = 0;
        this_scale = sum_xl / sum_l2;
      }
      float err = 0;
      for (int i = 0; i < n; ++i) {
        float diff = this_scale * (float)Laux[i] + this_min - x[i];
        diff = diff * diff;
        err += weights[i] * diff;
      }
      if (err < best_err) {
        for (int i = 0; i < n; ++i) L[i] = Laux[i];
        best_err = err;
        scale = this_scale;
        min = this_min;
      }
    }
  }
  *the_min = -min;
  return scale;
}

// Unsigned levels 0..nmax for non-negative x (the sub-block scales and mins of
// the weighted K-quants): the best of 9 inverse scales by weighted error, then
// up to 5 rounds of single-value moves. Returns the scale.
float fit_unsigned(int n, int nmax, const float* x, uint8_t* L, const float* qw) {
  float max = 0;
  for (int i = 0; i < n; ++i) max = std::max(max, x[i]);
  if (max < kGroupEps) {
    for (int i = 0; i < n; ++i) L[i] = 0;
    return 0.f;
  }
  float iscale = (float)nmax / max;
  for (int i = 0; i < n; ++i) L[i] = (uint8_t)round_nearest(iscale * x[i]);
  float scale = 1.0f / iscale;
  float best_mse = 0;
  for (int i = 0; i < n; ++i) {
    float diff = x[i] - scale * (float)L[i];
    best_mse += qw[i] * diff * diff;
  }
  for (int is = -4; is <= 4; ++is) {
    if (is == 0) continue;
    float iscale_is = (0.1f * (float)is + (float)nmax) / max;
    float scale_is = 1.0f / iscale_is;
    float mse = 0;
    for (int i = 0; i < n; ++i) {
      int l = std::min(nmax, round_nearest(iscale_is * x[i]));
      float diff = x[i] - scale_is * (float)l;
      mse += qw[i] * diff * diff;
    }
    if (mse < best_mse) {
      best_mse = mse;
      iscale = iscale_is;
    }
  }
  float sumlx = 0, suml2 = 0;
  for (int i = 0; i < n; ++i) {
    int l = std::min(nmax, round_nearest(iscale * x[i]));
    L[i] = (uint8_t)l;
    float w = qw[i];
    sumlx += w * x[i] * (float)l;
    suml2 += w * (float)l * (float)l;
  }
  for (int itry = 0; itry < 5; ++itry) {
    int n_changed = 0;
    for (int i = 0; i < n; ++i) {
      float w = qw[i];
      float slx = sumlx - w * x[i] * (float)L[i];
      float sl2 = suml2 - w * (float)L[i] * (float)L[i];
      if (slx > 0 && sl2 > 0) {
        int new_l = std::min(nmax, round_nearest(x[i] * sl2 / slx));
        if (new_l != L[i]) {
          slx += w * x[i] * (float)new_l;
          sl2 += w * (float)new_l * (float)new_l;
          if (slx * slx * suml2 > sumlx * sumlx * sl2) {
            L[i] = (uint8_t)new_l;
            sumlx = slx;
            suml2 = sl2;
            ++n_changed;
          }
        }
      }
    }
    if (!n_changed) break;
  }
  return suml2 > 0.0f ? sumlx / suml2 : 0.0f;
}

// weight[i] = qw[i] * sqrt(sigma2 + x[i]^2): the imatrix weights of the searches.
inline void imatrix_weights(int n, const float* qw, const float* x, float sigma2, float* weight) {
  for (int i = 0; i < n; ++i) weight[i] = qw[i] * std::sqrt(sigma2 + x[i] * x[i]);
}

// sum of x^2 over n values, in order.
inline float sum_squares(const float* x, int64_t n) {
  float s = 0;
  for (int64_t i = 0; i < n; ++i) s += x[i] * x[i];
  return s;
}

// Packs 4 2-bit planes: byte l of each 32-byte group holds L[l], L[l+32], L[l+64], L[l+96].
inline void pack_2bit(const uint8_t* L, uint8_t* qs) {
  for (int j = 0; j < QK_K; j += 128) {
    for (int l = 0; l < 32; ++l) {
      qs[j / 4 + l] = (uint8_t)(L[j + l] | (L[j + l + 32] << 2) | (L[j + l + 64] << 4) | (L[j + l + 96] << 6));
    }
  }
}

// The 6-bit scale and min of sub-block j into the 12 packed bytes (Q4_K, Q5_K).
inline void put_scale_min_k4(int j, uint8_t ls, uint8_t lm, uint8_t* s) {
  if (j < 4) {
    s[j] = ls;
    s[j + 4] = lm;
  } else {
    s[j + 4] = (uint8_t)((ls & 0xF) | ((lm & 0xF) << 4));
    s[j - 4] |= (uint8_t)((ls >> 4) << 6);
    s[j] |= (uint8_t)((lm >> 4) << 6);
  }
}

// Q3_K: the 6-bit biased scale l (0..63) of sub-block j into the 12 packed bytes.
inline void put_scale_q3k(int j, int l, uint8_t* s) {
  if (j < 8) s[j] = (uint8_t)(l & 0xF);
  else s[j - 8] |= (uint8_t)((l & 0xF) << 4);
  l >>= 4;
  s[j % 4 + 8] |= (uint8_t)(l << (2 * (j / 4)));
}

inline int get_scale_q3k(int j, const uint8_t* s) {
  int8_t sc = (int8_t)(j < 8 ? (s[j] & 0xF) : (s[j - 8] >> 4));
  sc = (int8_t)((sc | (((s[8 + j % 4] >> (2 * (j / 4))) & 3) << 4)) - 32);
  return sc;
}

// --- 32-value types ---------------------------------------------------------------

void q4_0_ref(const float* x, BlockQ4_0* y, int64_t nb) {
  for (int64_t i = 0; i < nb; i++, x += QK32) {
    float amax = 0.0f, max = 0.0f;
    for (int j = 0; j < QK32; j++) {
      if (amax < std::fabs(x[j])) { amax = std::fabs(x[j]); max = x[j]; }
    }
    const float d = max / -8.0f;
    const float id = d ? 1.0f / d : 0.0f;
    y[i].d = fp32_to_fp16(d);
    for (int j = 0; j < QK32 / 2; ++j) {
      const int q0 = std::min(15, (int)(int8_t)(int32_t)(x[j] * id + 8.5f));
      const int q1 = std::min(15, (int)(int8_t)(int32_t)(x[QK32 / 2 + j] * id + 8.5f));
      y[i].qs[j] = (uint8_t)(q0 | (q1 << 4));
    }
  }
}

void q4_1_ref(const float* x, BlockQ4_1* y, int64_t nb) {
  for (int64_t i = 0; i < nb; i++, x += QK32) {
    float min = 3.40282347e38f, max = -3.40282347e38f;
    for (int j = 0; j < QK32; j++) {
      if (x[j] < min) min = x[j];
      if (x[j] > max) max = x[j];
    }
    const float d = (max - min) / 15.0f;
    const float id = d ? 1.0f / d : 0.0f;
    y[i].d = fp32_to_fp16(d);
    y[i].m = fp32_to_fp16(min);
    for (int j = 0; j < QK32 / 2; ++j) {
      const int q0 = std::min(15, (int)(int8_t)(int32_t)((x[j] - min) * id + 0.5f));
      const int q1 = std::min(15, (int)(int8_t)(int32_t)((x[QK32 / 2 + j] - min) * id + 0.5f));
      y[i].qs[j] = (uint8_t)(q0 | (q1 << 4));
    }
  }
}

// Q5_0 / Q5_1: 4 low bits in qs, the fifth bits of the 32 values in qh.
inline void pack_5bit(const uint8_t* L, uint8_t* qs, uint8_t* qh_bytes) {
  uint32_t qh = 0;
  for (int j = 0; j < QK32 / 2; ++j) {
    const uint8_t a = L[j], b = L[j + QK32 / 2];
    qs[j] = (uint8_t)((a & 0x0F) | ((b & 0x0F) << 4));
    qh |= ((a & 0x10u) >> 4) << j;
    qh |= ((b & 0x10u) >> 4) << (j + QK32 / 2);
  }
  std::memcpy(qh_bytes, &qh, 4);
}

void q5_0_ref(const float* x, BlockQ5_0* y, int64_t nb) {
  uint8_t L[QK32];
  for (int64_t i = 0; i < nb; i++, x += QK32) {
    float amax = 0.0f, max = 0.0f;
    for (int j = 0; j < QK32; j++) {
      if (amax < std::fabs(x[j])) { amax = std::fabs(x[j]); max = x[j]; }
    }
    const float d = max / -16.0f;
    const float id = d ? 1.0f / d : 0.0f;
    y[i].d = fp32_to_fp16(d);
    for (int j = 0; j < QK32; ++j) L[j] = (uint8_t)std::min(31, (int)(int8_t)(int32_t)(x[j] * id + 16.5f));
    pack_5bit(L, y[i].qs, y[i].qh);
  }
}

void q5_1_ref(const float* x, BlockQ5_1* y, int64_t nb) {
  uint8_t L[QK32];
  for (int64_t i = 0; i < nb; i++, x += QK32) {
    float min = 3.40282347e38f, max = -3.40282347e38f;
    for (int j = 0; j < QK32; j++) {
      if (x[j] < min) min = x[j];
      if (x[j] > max) max = x[j];
    }
    const float d = (max - min) / 31.0f;
    const float id = d ? 1.0f / d : 0.0f;
    y[i].d = fp32_to_fp16(d);
    y[i].m = fp32_to_fp16(min);
    for (int j = 0; j < QK32; ++j) L[j] = (uint8_t)(int32_t)((x[j] - min) * id + 0.5f);
    pack_5bit(L, y[i].qs, y[i].qh);
  }
}

void q8_0_ref(const float* x, BlockQ8_0* y, int64_t nb) {
  for (int64_t i = 0; i < nb; i++, x += QK32) {
    float amax = 0.0f;
    for (int j = 0; j < QK32; j++) amax = std::max(amax, std::fabs(x[j]));
    const float d = amax / 127.0f;
    const float id = d ? 1.0f / d : 0.0f;
    y[i].d = fp32_to_fp16(d);
    for (int j = 0; j < QK32; ++j) y[i].qs[j] = (int8_t)std::round(x[j] * id);
  }
}

// The imatrix paths of the 32-value types: sigma2 is the row's mean square.
// The imatrix search of Q4_0 / Q5_0 (signed levels -nmax..nmax-1) over a row's
// blocks: emit(block, scale, L) for each, 8 blocks at a time through the AVX2 lanes
// where it can.
template <class Emit>
void signed_weighted_blocks(const float* x, int64_t n, const float* qw, int nmax, Emit emit) {
  float weight[8 * QK32], scales[8];
  int8_t L[8 * QK32];
  const float sigma2 = sum_squares(x, n) / (float)n;
  const int64_t nb = n / QK32;
  for (int64_t ib = 0; ib < nb;) {
    const int64_t group = (use_avx2() && ib + 8 <= nb) ? 8 : 1;
    for (int64_t k = 0; k < group; ++k) {
      imatrix_weights(QK32, qw + QK32 * (ib + k), x + QK32 * (ib + k), sigma2, weight + QK32 * k);
    }
    if (group == 8) quant_avx2::signed_fit_x8(QK32, x + QK32 * ib, weight, nmax, scales, L);
    else scales[0] = fit_signed(QK32, nmax, x + QK32 * ib, L, weight);
    for (int64_t k = 0; k < group; ++k) emit(ib + k, scales[k], L + QK32 * k);
    ib += group;
  }
}

void q4_0_weighted(const float* x, BlockQ4_0* y, int64_t n, const float* qw) {
  signed_weighted_blocks(x, n, qw, 8, [&](int64_t ib, float d, const int8_t* L) {
    y[ib].d = fp32_to_fp16(d);
    for (int j = 0; j < 16; ++j) y[ib].qs[j] = (uint8_t)(L[j] | (L[j + 16] << 4));
  });
}

// The imatrix search of Q4_1 / Q5_1 over a row's blocks: emit(block, scale,
// the_min, L) for each, 8 blocks at a time through the AVX2 lanes where it can.
template <class Emit>
void min_weighted_blocks(const float* x, int64_t n, const float* qw, int nmax, Emit emit) {
  float weight[8 * QK32], scales[8], mins[8];
  uint8_t L[8 * QK32], Laux[QK32];
  const float sigma2 = sum_squares(x, n) / (float)n;
  const int64_t nb = n / QK32;
  for (int64_t ib = 0; ib < nb;) {
    const int64_t group = (use_avx2() && ib + 8 <= nb) ? 8 : 1;
    for (int64_t k = 0; k < group; ++k) {
      imatrix_weights(QK32, qw + QK32 * (ib + k), x + QK32 * (ib + k), sigma2, weight + QK32 * k);
    }
    if (group == 8) {
      quant_avx2::fit_min_weighted_x8(QK32, x + QK32 * ib, weight, nmax, scales, mins, L);
    } else {
      scales[0] = fit_min_weighted(QK32, nmax, x + QK32 * ib, weight, L, &mins[0], Laux, -0.9f, 0.05f, 36);
    }
    for (int64_t k = 0; k < group; ++k) emit(ib + k, scales[k], mins[k], L + QK32 * k);
    ib += group;
  }
}

void q4_1_weighted(const float* x, BlockQ4_1* y, int64_t n, const float* qw) {
  min_weighted_blocks(x, n, qw, 15, [&](int64_t ib, float d, float min, const uint8_t* L) {
    y[ib].d = fp32_to_fp16(d);
    y[ib].m = fp32_to_fp16(-min);
    for (int j = 0; j < 16; ++j) y[ib].qs[j] = (uint8_t)(L[j] | (L[j + 16] << 4));
  });
}

void q5_0_weighted(const float* x, BlockQ5_0* y, int64_t n, const float* qw) {
  signed_weighted_blocks(x, n, qw, 16, [&](int64_t ib, float d, const int8_t* L) {
    y[ib].d = fp32_to_fp16(d);
    pack_5bit(reinterpret_cast<const uint8_t*>(L), y[ib].qs, y[ib].qh);
  });
}

void q5_1_weighted(const float* x, BlockQ5_1* y, int64_t n, const float* qw) {
  min_weighted_blocks(x, n, qw, 31, [&](int64_t ib, float d, float min, const uint8_t* L) {
    y[ib].d = fp32_to_fp16(d);
    y[ib].m = fp32_to_fp16(-min);
    pack_5bit(L, y[ib].qs, y[ib].qh);
  });
}

// --- K-quants ------------------------------------------------------------------

// Requantizes x with the stored 4-bit scales/mins of a Q2_K block.
void q2_k_requantize(const float* x, const BlockQ2_K& b, uint8_t* L) {
  const float dall = fp16_value(b.d), mall = fp16_value(b.dmin);
  for (int j = 0; j < QK_K / 16; ++j) {
    const float d = dall * (float)(b.scales[j] & 0xF);
    if (!d) continue;
    const float dm = mall * (float)(b.scales[j] >> 4);
    for (int ii = 0; ii < 16; ++ii) {
      int l = round_nearest((x[16 * j + ii] + dm) / d);
      L[16 * j + ii] = (uint8_t)std::max(0, std::min(3, l));
    }
  }
}

void q2_k_ref(const float* x, BlockQ2_K* y, int64_t nb) {
  uint8_t L[QK_K], Laux[16];
  float weights[16], mins[QK_K / 16], scales[QK_K / 16];
  const float q4scale = 15.f;
  for (int64_t i = 0; i < nb; i++, x += QK_K) {
    if (use_avx2()) {
      quant_avx2::q2_k_ref_fit(x, scales, mins, L);
      quant_avx2::q2_k_ref_fit(x + 128, scales + 8, mins + 8, L + 128);
    } else {
      for (int j = 0; j < QK_K / 16; ++j) {
        for (int l = 0; l < 16; ++l) weights[l] = std::fabs(x[16 * j + l]);
        scales[j] = fit_min_ref(16, 3, x + 16 * j, weights, L + 16 * j, &mins[j], Laux, -0.5f, 0.1f, 15, true);
      }
    }
    float max_scale = 0, max_min = 0;
    for (int j = 0; j < QK_K / 16; ++j) {
      if (scales[j] > max_scale) max_scale = scales[j];
      if (mins[j] > max_min) max_min = mins[j];
    }
    if (max_scale > 0) {
      const float iscale = q4scale / max_scale;
      for (int j = 0; j < QK_K / 16; ++j) y[i].scales[j] = (uint8_t)round_nearest(iscale * scales[j]);
      y[i].d = fp32_to_fp16(max_scale / q4scale);
    } else {
      for (int j = 0; j < QK_K / 16; ++j) y[i].scales[j] = 0;
      y[i].d = fp32_to_fp16(0.f);
    }
    if (max_min > 0) {
      const float iscale = q4scale / max_min;
      for (int j = 0; j < QK_K / 16; ++j) y[i].scales[j] |= (uint8_t)(round_nearest(iscale * mins[j]) << 4);
      y[i].dmin = fp32_to_fp16(max_min / q4scale);
    } else {
      y[i].dmin = fp32_to_fp16(0.f);
    }
    q2_k_requantize(x, y[i], L);
    pack_2bit(L, y[i].qs);
  }
}

void q2_k_weighted(const float* x, BlockQ2_K* y, int64_t nb, const float* qw_row) {
  uint8_t L[QK_K], Laux[16], Ls[QK_K / 16], Lm[QK_K / 16];
  float mins[QK_K / 16], scales[QK_K / 16], sw[QK_K / 16], weight[QK_K];
  for (int64_t i = 0; i < nb; i++, x += QK_K) {
    const float sigma2 = sum_squares(x, QK_K) / (float)QK_K;
    for (int j = 0; j < QK_K / 16; ++j) {
      float* w = weight + 16 * j;
      imatrix_weights(16, qw_row + QK_K * i + 16 * j, x + 16 * j, sigma2, w);
      float s = 0;
      for (int l = 0; l < 16; ++l) s += w[l];
      sw[j] = s;
    }
    if (use_avx2()) {
      quant_avx2::fit_min_weighted_x8(16, x, weight, 3, scales, mins, L);
      quant_avx2::fit_min_weighted_x8(16, x + 128, weight + 128, 3, scales + 8, mins + 8, L + 128);
    } else {
      for (int j = 0; j < QK_K / 16; ++j) {
        scales[j] = fit_min_weighted(16, 3, x + 16 * j, weight + 16 * j, L + 16 * j, &mins[j], Laux, -0.9f, 0.05f,
                                     36);
      }
    }
    const float dm = fit_unsigned(QK_K / 16, 15, scales, Ls, sw);
    const float mm = fit_unsigned(QK_K / 16, 15, mins, Lm, sw);
    y[i].d = fp32_to_fp16(dm);
    y[i].dmin = fp32_to_fp16(mm);
    for (int j = 0; j < QK_K / 16; ++j) y[i].scales[j] = (uint8_t)(Ls[j] | (Lm[j] << 4));
    q2_k_requantize(x, y[i], L);
    pack_2bit(L, y[i].qs);
  }
}

// Q3_K's shared tail: requantize with the stored scales, split off the high bits.
void q3_k_finish(const float* x, BlockQ3_K& b, int8_t* L) {
  for (int j = 0; j < QK_K / 16; ++j) {
    const float d = fp16_value(b.d) * (float)get_scale_q3k(j, b.scales);
    if (!d) continue;
    for (int ii = 0; ii < 16; ++ii) {
      int l = round_nearest(x[16 * j + ii] / d);
      L[16 * j + ii] = (int8_t)(std::max(-4, std::min(3, l)) + 4);
    }
  }
  // Value j's high bit goes to hmask[j % 32], bit j / 32.
  std::memset(b.hmask, 0, QK_K / 8);
  for (int j = 0; j < QK_K; ++j) {
    if (L[j] > 3) {
      b.hmask[j % (QK_K / 8)] |= (uint8_t)(1 << (j / (QK_K / 8)));
      L[j] -= 4;
    }
  }
  pack_2bit(reinterpret_cast<const uint8_t*>(L), b.qs);
}

void q3_k_ref(const float* x, BlockQ3_K* y, int64_t nb) {
  int8_t L[QK_K];
  float scales[QK_K / 16];
  for (int64_t i = 0; i < nb; i++, x += QK_K) {
    if (use_avx2()) {
      quant_avx2::q3_k_ref_fit(x, scales, L);
      quant_avx2::q3_k_ref_fit(x + 128, scales + 8, L + 128);
    } else {
      for (int j = 0; j < QK_K / 16; ++j) scales[j] = fit_signed_q3(16, 4, x + 16 * j, L + 16 * j);
    }
    float max_scale = 0, amax = 0;
    for (int j = 0; j < QK_K / 16; ++j) {
      const float a = std::fabs(scales[j]);
      if (a > amax) { amax = a; max_scale = scales[j]; }
    }
    std::memset(y[i].scales, 0, 12);
    if (max_scale) {
      const float iscale = -32.f / max_scale;
      for (int j = 0; j < QK_K / 16; ++j) {
        int8_t l = (int8_t)round_nearest(iscale * scales[j]);
        l = (int8_t)(std::max(-32, std::min(31, (int)l)) + 32);
        put_scale_q3k(j, l, y[i].scales);
      }
      y[i].d = fp32_to_fp16(1.0f / iscale);
    } else {
      y[i].d = fp32_to_fp16(0.f);
    }
    q3_k_finish(x, y[i], L);
  }
}

void q3_k_weighted(const float* x, BlockQ3_K* y, int64_t nb, const float* qw_row) {
  int8_t L[QK_K], Ls[QK_K / 16];
  float scales[QK_K / 16], weight[QK_K], sw[QK_K / 16];
  for (int64_t i = 0; i < nb; i++, x += QK_K) {
    const float sigma2 = 2.0f * sum_squares(x, QK_K) / (float)QK_K;
    for (int j = 0; j < QK_K / 16; ++j) {
      float* w = weight + 16 * j;
      imatrix_weights(16, qw_row + QK_K * i + 16 * j, x + 16 * j, sigma2, w);
      float s = 0;
      for (int l = 0; l < 16; ++l) s += w[l];
      sw[j] = s;
    }
    if (use_avx2()) {
      quant_avx2::signed_fit_x8(16, x, weight, 4, scales, L);
      quant_avx2::signed_fit_x8(16, x + 128, weight + 128, 4, scales + 8, L + 128);
    } else {
      for (int j = 0; j < QK_K / 16; ++j) scales[j] = fit_signed(16, 4, x + 16 * j, L + 16 * j, weight + 16 * j);
    }
    std::memset(y[i].scales, 0, 12);
    const float d_block = fit_signed(QK_K / 16, 32, scales, Ls, sw);
    for (int j = 0; j < QK_K / 16; ++j) put_scale_q3k(j, Ls[j], y[i].scales);
    y[i].d = fp32_to_fp16(d_block);
    q3_k_finish(x, y[i], L);
  }
}

// Q4_K / Q5_K: requantize with the stored 6-bit scales and mins (levels 0..nmax).
void k4_requantize(const float* x, uint16_t dh, uint16_t mh, const uint8_t* packed, int nmax, uint8_t* L) {
  for (int j = 0; j < QK_K / 32; ++j) {
    uint8_t sc, m;
    get_scale_min_k4(j, packed, &sc, &m);
    const float d = fp16_value(dh) * (float)sc;
    if (!d) continue;
    const float dm = fp16_value(mh) * (float)m;
    for (int ii = 0; ii < 32; ++ii) {
      int l = round_nearest((x[32 * j + ii] + dm) / d);
      L[32 * j + ii] = (uint8_t)std::max(0, std::min(nmax, l));
    }
  }
}

// The reference scale search of Q4_K (nmax 15) and Q5_K (nmax 31): per
// 32-value sub-block scales and mins, then 6-bit codes relative to the largest.
void k4_ref_scales(const float* x, int nmax, float rmin, int nstep, uint8_t* L, uint8_t* packed, uint16_t* dh,
                   uint16_t* mh) {
  uint8_t Laux[32];
  float weights[32], mins[QK_K / 32], scales[QK_K / 32];
  if (use_avx2()) {
    quant_avx2::k4_ref_fit(x, nmax, rmin, nstep, scales, mins, L);
  } else {
    for (int j = 0; j < QK_K / 32; ++j) {
      float sum_x2 = 0;
      for (int l = 0; l < 32; ++l) sum_x2 += x[32 * j + l] * x[32 * j + l];
      const float av_x = std::sqrt(sum_x2 / 32.0f);
      for (int l = 0; l < 32; ++l) weights[l] = av_x + std::fabs(x[32 * j + l]);
      scales[j] = fit_min_ref(32, nmax, x + 32 * j, weights, L + 32 * j, &mins[j], Laux, rmin, 0.1f, nstep, false);
    }
  }
  float max_scale = 0, max_min = 0;
  for (int j = 0; j < QK_K / 32; ++j) {
    if (scales[j] > max_scale) max_scale = scales[j];
    if (mins[j] > max_min) max_min = mins[j];
  }
  const float inv_scale = max_scale > 0 ? 63.f / max_scale : 0.f;
  const float inv_min = max_min > 0 ? 63.f / max_min : 0.f;
  for (int j = 0; j < QK_K / 32; ++j) {
    uint8_t ls = (uint8_t)round_nearest(inv_scale * scales[j]);
    uint8_t lm = (uint8_t)round_nearest(inv_min * mins[j]);
    put_scale_min_k4(j, std::min<uint8_t>(63, ls), std::min<uint8_t>(63, lm), packed);
  }
  *dh = fp32_to_fp16(max_scale / 63.f);
  *mh = fp32_to_fp16(max_min / 63.f);
}

// The imatrix scale search of Q4_K / Q5_K. The codes are stored as found for
// Q4_K and clamped to 63 for Q5_K (a negative fit wraps past 63 in a uint8), as
// llama.cpp does.
void k4_weighted_scales(const float* x, const float* qw, int nmax, uint8_t* L, uint8_t* packed, uint16_t* dh,
                        uint16_t* mh) {
  const bool clamp = nmax == 31;
  uint8_t Laux[32], Ls[QK_K / 32], Lm[QK_K / 32];
  float weights[QK_K], sw[QK_K / 32], mins[QK_K / 32], scales[QK_K / 32];
  const float sigma2 = 2.0f * sum_squares(x, QK_K) / (float)QK_K;
  for (int j = 0; j < QK_K / 32; ++j) {
    float* w = weights + 32 * j;
    imatrix_weights(32, qw + 32 * j, x + 32 * j, sigma2, w);
    float s = 0;
    for (int l = 0; l < 32; ++l) s += w[l];
    sw[j] = s;
  }
  if (use_avx2()) {
    quant_avx2::fit_min_weighted_x8(32, x, weights, nmax, scales, mins, L);
  } else {
    for (int j = 0; j < QK_K / 32; ++j) {
      scales[j] = fit_min_weighted(32, nmax, x + 32 * j, weights + 32 * j, L + 32 * j, &mins[j], Laux, -0.9f,
                                   0.05f, 36);
    }
  }
  const float d_block = fit_unsigned(QK_K / 32, 63, scales, Ls, sw);
  const float m_block = fit_unsigned(QK_K / 32, 63, mins, Lm, sw);
  for (int j = 0; j < QK_K / 32; ++j) {
    if (clamp) put_scale_min_k4(j, std::min<uint8_t>(63, Ls[j]), std::min<uint8_t>(63, Lm[j]), packed);
    else put_scale_min_k4(j, Ls[j], Lm[j], packed);
  }
  *dh = fp32_to_fp16(d_block);
  *mh = fp32_to_fp16(m_block);
}

void q4_k_pack(const uint8_t* L, uint8_t* q) {
  for (int j = 0; j < QK_K; j += 64, q += 32) {
    for (int l = 0; l < 32; ++l) q[l] = (uint8_t)(L[j + l] | (L[j + l + 32] << 4));
  }
}

void q5_k_pack(const uint8_t* L, uint8_t* ql, uint8_t* qh) {
  std::memset(qh, 0, QK_K / 8);
  uint8_t m1 = 1, m2 = 2;
  for (int n = 0; n < QK_K; n += 64, ql += 32) {
    for (int j = 0; j < 32; ++j) {
      int l1 = L[n + j], l2 = L[n + j + 32];
      if (l1 > 15) { l1 -= 16; qh[j] |= m1; }
      if (l2 > 15) { l2 -= 16; qh[j] |= m2; }
      ql[j] = (uint8_t)(l1 | (l2 << 4));
    }
    m1 = (uint8_t)(m1 << 2);
    m2 = (uint8_t)(m2 << 2);
  }
}

void q4_k_row(const float* x, BlockQ4_K* y, int64_t nb, const float* qw_row) {
  uint8_t L[QK_K];
  for (int64_t i = 0; i < nb; i++, x += QK_K) {
    if (qw_row) k4_weighted_scales(x, qw_row + QK_K * i, 15, L, y[i].scales, &y[i].d, &y[i].dmin);
    else k4_ref_scales(x, 15, -1.f, 20, L, y[i].scales, &y[i].d, &y[i].dmin);
    k4_requantize(x, y[i].d, y[i].dmin, y[i].scales, 15, L);
    q4_k_pack(L, y[i].qs);
  }
}

void q5_k_row(const float* x, BlockQ5_K* y, int64_t nb, const float* qw_row) {
  uint8_t L[QK_K];
  for (int64_t i = 0; i < nb; i++, x += QK_K) {
    if (qw_row) k4_weighted_scales(x, qw_row + QK_K * i, 31, L, y[i].scales, &y[i].d, &y[i].dmin);
    else k4_ref_scales(x, 31, -0.5f, 15, L, y[i].scales, &y[i].d, &y[i].dmin);
    k4_requantize(x, y[i].d, y[i].dmin, y[i].scales, 31, L);
    q5_k_pack(L, y[i].qs, y[i].qh);
  }
}

void q6_k_row(const float* x, BlockQ6_K* y, int64_t nb, const float* qw_row) {
  int8_t L[QK_K];
  float scales[QK_K / 16];
  for (int64_t i = 0; i < nb; i++, x += QK_K) {
    if (use_avx2()) {
      for (int half = 0; half < 2; ++half) {
        quant_avx2::signed_fit_x8(16, x + 128 * half, qw_row ? qw_row + QK_K * i + 128 * half : nullptr, 32,
                                  scales + 8 * half, L + 128 * half);
      }
    } else {
      for (int ib = 0; ib < QK_K / 16; ++ib) {
        scales[ib] = fit_signed(16, 32, x + 16 * ib, L + 16 * ib, qw_row ? qw_row + QK_K * i + 16 * ib : nullptr);
      }
    }
    float max_scale = 0, max_abs_scale = 0;
    for (int ib = 0; ib < QK_K / 16; ++ib) {
      const float a = std::fabs(scales[ib]);
      if (a > max_abs_scale) { max_abs_scale = a; max_scale = scales[ib]; }
    }
    if (max_abs_scale < kGroupEps) {
      std::memset(&y[i], 0, sizeof(BlockQ6_K));
      y[i].d = fp32_to_fp16(0.f);
      continue;
    }
    const float iscale = -128.f / max_scale;
    y[i].d = fp32_to_fp16(1.0f / iscale);
    for (int ib = 0; ib < QK_K / 16; ++ib) y[i].scales[ib] = (int8_t)std::min(127, round_nearest(iscale * scales[ib]));
    for (int j = 0; j < QK_K / 16; ++j) {
      const float d = fp16_value(y[i].d) * (float)y[i].scales[j];
      if (!d) continue;
      for (int ii = 0; ii < 16; ++ii) {
        int l = round_nearest(x[16 * j + ii] / d);
        L[16 * j + ii] = (int8_t)(std::max(-32, std::min(31, l)) + 32);
      }
    }
    uint8_t* ql = y[i].ql;
    uint8_t* qh = y[i].qh;
    const uint8_t* U = reinterpret_cast<const uint8_t*>(L);
    for (int j = 0; j < QK_K; j += 128, ql += 64, qh += 32) {
      for (int l = 0; l < 32; ++l) {
        ql[l] = (uint8_t)((U[j + l] & 0xF) | ((U[j + l + 64] & 0xF) << 4));
        ql[l + 32] = (uint8_t)((U[j + l + 32] & 0xF) | ((U[j + l + 96] & 0xF) << 4));
        qh[l] = (uint8_t)((U[j + l] >> 4) | ((U[j + l + 32] >> 4) << 2) | ((U[j + l + 64] >> 4) << 4) |
                          ((U[j + l + 96] >> 4) << 6));
      }
    }
  }
}

// --- IQ4_NL / IQ4_XS -------------------------------------------------------------

// Index of the level nearest to x (ties to the lower one), by bisection.
inline int nearest_level(float x) {
  const int8_t* v = kIQ4Levels;
  if (x <= (float)v[0]) return 0;
  if (x >= (float)v[15]) return 15;
  int lo = 0, hi = 15;
  while (hi - lo > 1) {
    const int mid = (lo + hi) / 2;
    if (x < (float)v[mid]) hi = mid;
    else lo = mid;
  }
  return x - (float)v[hi - 1] < (float)v[hi] - x ? hi - 1 : hi;
}

// The search weights of a super-block of sb values: the imatrix's, scaled by
// sqrt(sigma2 + x^2) with sigma2 = 2 * mean(x^2), or x^2 without one.
void iq4_weights(int sb, const float* x, const float* qw, float* weight) {
  if (!qw) {
    for (int j = 0; j < sb; ++j) weight[j] = x[j] * x[j];
    return;
  }
  float sigma2 = sum_squares(x, sb);
  sigma2 *= 2.f / (float)sb;
  imatrix_weights(sb, qw, x, sigma2, weight);
}

// One 32-value sub-block's scale: the best of 16 candidates (-max / -127, then
// inverse scales (k - 127) / max for k = -7..7) by weighted least squares over
// the 16 levels; 0 for an all-zero sub-block.
float iq4_sub_scale(const float* xb, const float* weight) {
  constexpr int ntry = 7;
  const int8_t* values = kIQ4Levels;
  float amax = 0, max = 0;
  for (int j = 0; j < 32; ++j) {
    const float ax = std::fabs(xb[j]);
    if (ax > amax) { amax = ax; max = xb[j]; }
  }
  if (amax < kGroupEps) return 0;
  float d = -max / (float)values[0];
  float id = 1.0f / d;
  float sumqx = 0, sumq2 = 0;
  for (int j = 0; j < 32; ++j) {
    const float q = (float)values[nearest_level(id * xb[j])];
    const float w = weight[j];
    sumqx += w * q * xb[j];
    sumq2 += w * q * q;
  }
  d = sumq2 > 0 ? sumqx / sumq2 : 0.f;
  float best = d * sumqx;
  for (int itry = -ntry; itry <= ntry; ++itry) {
    id = (float)(itry + values[0]) / max;
    sumqx = sumq2 = 0;
    for (int j = 0; j < 32; ++j) {
      const float q = (float)values[nearest_level(id * xb[j])];
      const float w = weight[j];
      sumqx += w * q * xb[j];
      sumq2 += w * q * q;
    }
    if (sumq2 > 0 && sumqx * sumqx > best * sumq2) {
      d = sumqx / sumq2;
      best = d * sumqx;
    }
  }
  return d;
}

// One super-block of sb values in sub-blocks of 32 (sb = 32: IQ4_NL, one fp16
// scale; sb = 256: IQ4_XS, 6-bit sub-block scales under an fp16 one) from the
// sub-blocks' scales (iq4_sub_scale): the levels nearest to x / scale.
void iq4_block(int sb, const float* x, const float* scales, uint16_t* dh, uint8_t* q4, uint16_t* scales_h,
               uint8_t* scales_l) {
  uint8_t L[QK_K];
  const int nsub = sb / 32;
  if (nsub > 1) {
    float max_scale = 0, amax_scale = 0;
    for (int ib = 0; ib < nsub; ++ib) {
      const float abs_d = std::fabs(scales[ib]);
      if (abs_d > amax_scale) { amax_scale = abs_d; max_scale = scales[ib]; }
    }
    *scales_h = 0;
    const float d = -max_scale / 32.0f;
    *dh = fp32_to_fp16(d);
    const float id = d ? 1.0f / d : 0.f;
    for (int ib = 0; ib < nsub; ++ib) {
      int l = round_nearest(id * scales[ib]);
      l = std::max(-32, std::min(31, l));
      const float dl = d * (float)l;
      const float idl = dl ? 1.0f / dl : 0.f;
      for (int j = 0; j < 32; ++j) L[ib * 32 + j] = (uint8_t)nearest_level(idl * x[ib * 32 + j]);
      l += 32;
      const uint8_t l_l = (uint8_t)(l & 0xf), l_h = (uint8_t)(l >> 4);
      if (ib % 2 == 0) scales_l[ib / 2] = l_l;
      else scales_l[ib / 2] |= (uint8_t)(l_l << 4);
      *scales_h |= (uint16_t)(l_h << 2 * (ib % 8));
    }
  } else {
    *dh = fp32_to_fp16(scales[0]);
    const float id = scales[0] ? 1.0f / scales[0] : 0;
    for (int j = 0; j < sb; ++j) L[j] = (uint8_t)nearest_level(id * x[j]);
  }
  for (int i = 0; i < sb / 32; ++i) {
    for (int j = 0; j < 16; ++j) q4[16 * i + j] = (uint8_t)(L[32 * i + j] | (L[32 * i + 16 + j] << 4));
  }
}

// The scales of 8 consecutive 32-value sub-blocks (x[256], weights w[256]).
void iq4_scales8(const float* x, const float* w, float* scales) {
  if (use_avx2()) {
    quant_avx2::iq4_scales_x8(x, w, scales);
  } else {
    for (int k = 0; k < 8; ++k) scales[k] = iq4_sub_scale(x + 32 * k, w + 32 * k);
  }
}

void iq4_nl_row(const float* x, BlockIQ4_NL* y, int64_t nb, const float* qw_row) {
  uint16_t unused_h;
  float weight[8 * QK32], scales[8];
  for (int64_t i = 0; i < nb;) {
    const int64_t group = i + 8 <= nb ? 8 : 1;
    for (int64_t k = 0; k < group; ++k) {
      iq4_weights(QK32, x + QK32 * (i + k), qw_row ? qw_row + QK32 * (i + k) : nullptr, weight + QK32 * k);
    }
    if (group == 8) iq4_scales8(x + QK32 * i, weight, scales);
    else scales[0] = iq4_sub_scale(x + QK32 * i, weight);
    for (int64_t k = 0; k < group; ++k) {
      iq4_block(QK32, x + QK32 * (i + k), scales + k, &y[i + k].d, y[i + k].qs, &unused_h, nullptr);
    }
    i += group;
  }
}

void iq4_xs_row(const float* x, BlockIQ4_XS* y, int64_t nb, const float* qw_row) {
  float weight[QK_K], scales[QK_K / 32];
  for (int64_t i = 0; i < nb; ++i) {
    iq4_weights(QK_K, x + QK_K * i, qw_row ? qw_row + QK_K * i : nullptr, weight);
    iq4_scales8(x + QK_K * i, weight, scales);
    iq4_block(QK_K, x + QK_K * i, scales, &y[i].d, y[i].qs, &y[i].scales_h, y[i].scales_l);
  }
}

}  // namespace

// --- float conversions -----------------------------------------------------------

uint16_t fp32_to_bf16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 64);  // NaN, made quiet
  return (uint16_t)((u + 0x7fffu + ((u >> 16) & 1)) >> 16);
}

// --- entry points ------------------------------------------------------------------

const std::vector<int32_t>& quantize_types() {
  static const std::vector<int32_t> types = {
      TYPE_F16,  TYPE_BF16, TYPE_Q4_0, TYPE_Q4_1, TYPE_Q5_0, TYPE_Q5_1,   TYPE_Q8_0,
      TYPE_Q2_K, TYPE_Q3_K, TYPE_Q4_K, TYPE_Q5_K, TYPE_Q6_K, TYPE_IQ4_NL, TYPE_IQ4_XS,
  };
  return types;
}

bool can_quantize(int32_t type) {
  for (int32_t t : quantize_types()) {
    if (t == type) return true;
  }
  return false;
}

void quantize_row(int32_t type, const float* x, void* dst, int64_t n, const float* qw) {
  const int64_t nb32 = n / QK32, nbk = n / QK_K;
  switch (type) {
    case TYPE_F16: {
      uint16_t* y = static_cast<uint16_t*>(dst);
      if (use_avx2()) quant_avx2::f16_row(x, y, n, &fp32_to_fp16);
      else for (int64_t i = 0; i < n; ++i) y[i] = fp32_to_fp16(x[i]);
      break;
    }
    case TYPE_BF16: {
      // fp32_to_bf16 without its branch, so the compiler vectorizes the loop
      uint16_t* y = static_cast<uint16_t*>(dst);
      const uint32_t* u = reinterpret_cast<const uint32_t*>(x);
      for (int64_t i = 0; i < n; ++i) {
        const uint32_t r = (u[i] + 0x7fffu + ((u[i] >> 16) & 1)) >> 16;
        y[i] = (uint16_t)((u[i] & 0x7fffffffu) > 0x7f800000u ? ((u[i] >> 16) | 64) : r);
      }
      break;
    }
    case TYPE_Q4_0:
      if (qw) q4_0_weighted(x, static_cast<BlockQ4_0*>(dst), n, qw);
      else q4_0_ref(x, static_cast<BlockQ4_0*>(dst), nb32);
      break;
    case TYPE_Q4_1:
      if (qw) q4_1_weighted(x, static_cast<BlockQ4_1*>(dst), n, qw);
      else q4_1_ref(x, static_cast<BlockQ4_1*>(dst), nb32);
      break;
    case TYPE_Q5_0:
      if (qw) q5_0_weighted(x, static_cast<BlockQ5_0*>(dst), n, qw);
      else q5_0_ref(x, static_cast<BlockQ5_0*>(dst), nb32);
      break;
    case TYPE_Q5_1:
      if (qw) q5_1_weighted(x, static_cast<BlockQ5_1*>(dst), n, qw);
      else q5_1_ref(x, static_cast<BlockQ5_1*>(dst), nb32);
      break;
    case TYPE_Q8_0:
      if (use_avx2()) quant_avx2::q8_0_blocks(x, dst, nb32, &fp32_to_fp16);
      else q8_0_ref(x, static_cast<BlockQ8_0*>(dst), nb32);
      break;
    case TYPE_Q2_K:
      if (qw) q2_k_weighted(x, static_cast<BlockQ2_K*>(dst), nbk, qw);
      else q2_k_ref(x, static_cast<BlockQ2_K*>(dst), nbk);
      break;
    case TYPE_Q3_K:
      if (qw) q3_k_weighted(x, static_cast<BlockQ3_K*>(dst), nbk, qw);
      else q3_k_ref(x, static_cast<BlockQ3_K*>(dst), nbk);
      break;
    case TYPE_Q4_K: q4_k_row(x, static_cast<BlockQ4_K*>(dst), nbk, qw); break;
    case TYPE_Q5_K: q5_k_row(x, static_cast<BlockQ5_K*>(dst), nbk, qw); break;
    case TYPE_Q6_K: q6_k_row(x, static_cast<BlockQ6_K*>(dst), nbk, qw); break;
    case TYPE_IQ4_NL: iq4_nl_row(x, static_cast<BlockIQ4_NL*>(dst), nb32, qw); break;
    case TYPE_IQ4_XS: iq4_xs_row(x, static_cast<BlockIQ4_XS*>(dst), nbk, qw); break;
    default:
      throw std::invalid_argument(std::string("quantize: cannot produce type ") + std::to_string(type));
  }
}

void quantize_rows(int32_t type, int32_t src_type, const void* src, void* dst, int64_t nrows,
                   int64_t n_per_row, const float* imatrix, ThreadPool* pool) {
  if (!can_quantize(type)) {
    throw std::invalid_argument("quantize: cannot produce type " + std::to_string(type) +
                                (is_known_type(type) ? std::string(" (") + type_traits(type).name + ")" : ""));
  }
  const TypeTraits& t = type_traits(type);
  if (n_per_row <= 0 || n_per_row % t.block_size != 0) {
    throw std::invalid_argument(std::string("quantize: ") + t.name + " rows must be a positive multiple of " +
                                std::to_string(t.block_size) + " values, got " + std::to_string(n_per_row));
  }
  if (src_type != TYPE_F32 && !can_quantize(src_type)) {   // the types dequantize_row reads
    throw std::invalid_argument("quantize: cannot read source type " + std::to_string(src_type));
  }
  const TypeTraits& ts = type_traits(src_type);
  if (n_per_row % ts.block_size != 0) {
    throw std::invalid_argument(std::string("quantize: ") + ts.name + " source rows must be a multiple of " +
                                std::to_string(ts.block_size) + " values, got " + std::to_string(n_per_row));
  }
  if (nrows <= 0) return;
  const size_t rb = row_bytes(type, n_per_row), src_rb = row_bytes(src_type, n_per_row);
  const uint8_t* in = static_cast<const uint8_t*>(src);
  uint8_t* out = static_cast<uint8_t*>(dst);
  auto run = [&](int64_t r0, int64_t r1) {
    std::vector<float> row(src_type == TYPE_F32 ? 0 : (size_t)n_per_row);
    for (int64_t r = r0; r < r1; ++r) {
      const uint8_t* s = in + (size_t)r * src_rb;
      const float* x = reinterpret_cast<const float*>(s);
      if (src_type != TYPE_F32) {
        dequantize_row(src_type, s, row.data(), n_per_row);
        x = row.data();
      }
      quantize_row(type, x, out + (size_t)r * rb, n_per_row, imatrix);
    }
  };
  if (!pool || pool->size() == 1 || nrows == 1) {
    run(0, nrows);
    return;
  }
  // Chunks of rows claimed by whichever thread is free (rows differ in cost).
  const int64_t chunk = std::max<int64_t>(1, nrows / (int64_t)(pool->size() * 8));
  const int64_t n_chunks = (nrows + chunk - 1) / chunk;
  pool->run_chunks(n_chunks, [&](int64_t c) { run(c * chunk, std::min(nrows, (c + 1) * chunk)); });
}

}  // namespace ll
