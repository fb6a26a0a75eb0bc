// ops.cpp - scalar element-wise and attention operations (see ops.h).
#include "ops.h"

#include <algorithm>
#include <cmath>

#include "kernels.h"
#include "kv_cache.h"
#include "ops_simd.h"
#include "scalar_util.h"

#if defined(__x86_64__) || defined(_M_X64) || defined(__i386__)
#define LL_OPS_X86 1
#endif

namespace ll {

// --- vector primitives: generic versions and the per-ISA table ---------------------
namespace {

// Eight independent partial sums: the same order on every machine, and easy for
// the compiler to keep in vector registers.
float dot_generic(const float* a, const float* b, int64_t n) {
  float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    for (int j = 0; j < 8; ++j) acc[j] += a[i + j] * b[i + j];
  }
  float s = ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
  for (; i < n; ++i) s += a[i] * b[i];
  return s;
}

void axpy_generic(float* y, float a, const float* x, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] += a * x[i];
}

float dot_f16_generic(const float* a, const uint16_t* b, int64_t n) {
  float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    for (int j = 0; j < 8; ++j) acc[j] += a[i + j] * fp16_to_fp32(b[i + j]);
  }
  float s = ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
  for (; i < n; ++i) s += a[i] * fp16_to_fp32(b[i]);
  return s;
}

void axpy_f16_generic(float* y, float a, const uint16_t* x, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] += a * fp16_to_fp32(x[i]);
}

struct AttnTables {
  AttnFns t[3];
  AttnTables() {
    for (AttnFns& f : t) f = AttnFns{dot_generic, axpy_generic, dot_f16_generic, axpy_f16_generic, silu_mul, gelu_mul};
#ifdef LL_OPS_X86
    if (isa_supported(ISA::avx2)) fill_attn_avx2(&t[1]);
    if (isa_supported(ISA::avx512)) fill_attn_avx512(&t[2]);
#endif
  }
};

}  // namespace

const AttnFns& attn_fns() {
  static const AttnTables tables;
  return tables.t[(int)active_isa()];
}

// --- norms ---------------------------------------------------------------------
void rmsnorm_row(const float* x, const float* w, float* y, int64_t d, float eps) {
  double sum_sq = 0.0;
  for (int64_t i = 0; i < d; ++i) sum_sq += (double)x[i] * x[i];
  const float scale = 1.0f / std::sqrt((float)(sum_sq / (double)d) + eps);
  for (int64_t i = 0; i < d; ++i) y[i] = x[i] * scale * w[i];
}

// --- rotary position embedding -------------------------------------------------
void rope_angles(int32_t pos, float base, float freq_scale, const float* factors, int64_t n_rot,
                 float* cs) {
  for (int64_t i = 0; i < n_rot / 2; ++i) {
    double theta = (double)freq_scale * (double)pos *
                   std::pow((double)base, -2.0 * (double)i / (double)n_rot);
    if (factors) theta /= (double)factors[i];
    cs[2 * i] = (float)std::cos(theta);
    cs[2 * i + 1] = (float)std::sin(theta);
  }
}

void rope_apply(float* x, const float* cs, int64_t n_rot, bool neox) {
  const int64_t half = n_rot / 2;
  for (int64_t i = 0; i < half; ++i) {
    const int64_t a = neox ? i : 2 * i;          // first element of pair i
    const int64_t b = neox ? i + half : 2 * i + 1;
    const float c = cs[2 * i], s = cs[2 * i + 1];
    const float x0 = x[a], x1 = x[b];
    x[a] = x0 * c - x1 * s;
    x[b] = x0 * s + x1 * c;
  }
}

// --- gated activations ------------------------------------------------------------
void silu_mul(float* x, const float* up, int64_t n) {
  for (int64_t i = 0; i < n; ++i) x[i] = x[i] / (1.0f + std::exp(-x[i])) * up[i];
}

// gelu_tanh(v) = 0.5 v (1 + tanh(u)) = v / (1 + e^(-2u)), u = sqrt(2/pi) (v + 0.044715 v^3);
// the second form has no cancellation for negative v and is what the SIMD kernels use.
void gelu_mul(float* x, const float* up, int64_t n) {
  const float sqrt_2_over_pi = 0.79788456080286535588f;
  for (int64_t i = 0; i < n; ++i) {
    const float v = x[i];
    const float u = sqrt_2_over_pi * (v + 0.044715f * v * v * v);
    x[i] = v / (1.0f + std::exp(-2.0f * u)) * up[i];
  }
}

// --- attention ----------------------------------------------------------------------
void softmax(float* x, int64_t n) {
  float mx = x[0];
  for (int64_t i = 1; i < n; ++i) mx = std::max(mx, x[i]);
  double sum = 0.0;
  for (int64_t i = 0; i < n; ++i) {
    x[i] = std::exp(x[i] - mx);
    sum += x[i];
  }
  const float inv = (float)(1.0 / sum);
  for (int64_t i = 0; i < n; ++i) x[i] *= inv;
}

void attend_one(const KVCache& kv, int32_t layer, int32_t kv_head, const float* q,
                const int32_t* table, int32_t p0, int32_t p1, float scale,
                float* scores, float* out) {
  const AttnFns& f = attn_fns();
  const bool f16 = kv.type == KVType::f16;
  const int32_t bs = kv.block_size, d = kv.head_dim, dv = kv.head_dim_v;
  const size_t k_off = (size_t)kv_head * d * kv.elem_size, v_off = (size_t)kv_head * dv * kv.elem_size;
  const int32_t n = p1 - p0 + 1;
  for (int32_t p = p0; p <= p1; ++p) {                // scores[j] = q . k[p] * scale
    const uint8_t* k = kv.k_at(layer, table[p / bs], p % bs) + k_off;
    const float dot = f16 ? f.dot_f16(q, reinterpret_cast<const uint16_t*>(k), d)
                          : f.dot(q, reinterpret_cast<const float*>(k), d);
    scores[p - p0] = dot * scale;
  }
  softmax(scores, n);
  for (int32_t i = 0; i < dv; ++i) out[i] = 0.0f;     // out = sum_j scores[j] * v[p]
  for (int32_t p = p0; p <= p1; ++p) {
    const uint8_t* v = kv.v_at(layer, table[p / bs], p % bs) + v_off;
    if (f16) {
      f.axpy_f16(out, scores[p - p0], reinterpret_cast<const uint16_t*>(v), dv);
    } else {
      f.axpy(out, scores[p - p0], reinterpret_cast<const float*>(v), dv);
    }
  }
}

}  // namespace ll
