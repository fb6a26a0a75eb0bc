// kernels_generic.cpp - the scalar reference kernels: activation quantization
// and one dot product per weight type, integer arithmetic inside each block.
//
// These define the results every SIMD kernel is checked against. Every output
// Y[m, n] is one dot() call on row m and row n, so it does not depend on M or
// on how the rows are split between threads (batch invariance).
#include <cmath>
#include <cstring>

#include "kernel_table.h"
#include "kernels.h"
#include "quant_blocks.h"
#include "scalar_util.h"

namespace ll {
namespace {

// --- activation quantization ---------------------------------------------------
// d = amax / 127, q = round-half-even(x / d). The SIMD versions use the same
// operations (one multiply by 1/d, the current rounding mode), so they give the
// same bytes.

void quantize_row_q8a(const float* x, void* dst, int64_t k) {
  BlockQ8A* y = (BlockQ8A*)dst;
  for (int64_t i = 0; i < k / QK32; i++, x += QK32) {
    float amax = 0.0f;
    for (int j = 0; j < QK32; j++) amax = std::fmax(amax, std::fabs(x[j]));
    const float d = amax / 127.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    int sum = 0;
    for (int j = 0; j < QK32; j++) {
      const int q = (int)std::nearbyint(x[j] * id);
      y[i].qs[j] = (int8_t)q;
      sum += q;
    }
    y[i].d = d;
    y[i].sum = (int16_t)sum;
    y[i].unused = 0;
  }
}

void quantize_row_q8k(const float* x, void* dst, int64_t k) {
  BlockQ8_K* y = (BlockQ8_K*)dst;
  for (int64_t i = 0; i < k / QK_K; i++, x += QK_K) {
    float amax = 0.0f;
    for (int j = 0; j < QK_K; j++) amax = std::fmax(amax, std::fabs(x[j]));
    const float d = amax / 127.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    for (int j = 0; j < QK_K; j++) y[i].qs[j] = (int8_t)(int)std::nearbyint(x[j] * id);
    for (int g = 0; g < QK_K / 16; g++) {
      int s = 0;
      for (int l = 0; l < 16; l++) s += y[i].qs[16 * g + l];
      y[i].bsums[g] = (int16_t)s;
    }
    y[i].d = d;
  }
}

// --- dot products: one weight row (nb blocks) with one activation row ----------

float dot_f32(const void* w, const void* x, int64_t n) {
  const float* a = (const float*)w;
  const float* b = (const float*)x;
  float s = 0.0f;
  for (int64_t i = 0; i < n; i++) s += a[i] * b[i];
  return s;
}

float dot_f16(const void* w, const void* x, int64_t n) {
  const uint16_t* a = (const uint16_t*)w;
  const float* b = (const float*)x;
  float s = 0.0f;
  for (int64_t i = 0; i < n; i++) s += fp16_to_fp32(a[i]) * b[i];
  return s;
}

float dot_bf16(const void* w, const void* x, int64_t n) {
  const uint16_t* a = (const uint16_t*)w;
  const float* b = (const float*)x;
  float s = 0.0f;
  for (int64_t i = 0; i < n; i++) {
    uint32_t bits = (uint32_t)a[i] << 16;
    float f;
    std::memcpy(&f, &bits, 4);
    s += f * b[i];
  }
  return s;
}

float dot_q4_0(const void* w, const void* x, int64_t nb) {
  const BlockQ4_0* a = (const BlockQ4_0*)w;
  const BlockQ8A* b = (const BlockQ8A*)x;
  float s = 0.0f;
  for (int64_t i = 0; i < nb; i++) {
    int isum = 0;
    for (int j = 0; j < 16; j++) {
      isum += ((a[i].qs[j] & 0xF) - 8) * b[i].qs[j];
      isum += ((a[i].qs[j] >> 4) - 8) * b[i].qs[j + 16];
    }
    s += (fp16_to_fp32(a[i].d) * b[i].d) * (float)isum;
  }
  return s;
}

float dot_q4_1(const void* w, const void* x, int64_t nb) {
  const BlockQ4_1* a = (const BlockQ4_1*)w;
  const BlockQ8A* b = (const BlockQ8A*)x;
  float s = 0.0f;
  for (int64_t i = 0; i < nb; i++) {
    int isum = 0;
    for (int j = 0; j < 16; j++) {
      isum += (a[i].qs[j] & 0xF) * b[i].qs[j];
      isum += (a[i].qs[j] >> 4) * b[i].qs[j + 16];
    }
    s += (fp16_to_fp32(a[i].d) * b[i].d) * (float)isum + fp16_to_fp32(a[i].m) * (b[i].d * (float)b[i].sum);
  }
  return s;
}

float dot_q5_0(const void* w, const void* x, int64_t nb) {
  const BlockQ5_0* a = (const BlockQ5_0*)w;
  const BlockQ8A* b = (const BlockQ8A*)x;
  float s = 0.0f;
  for (int64_t i = 0; i < nb; i++) {
    uint32_t qh;
    std::memcpy(&qh, a[i].qh, 4);
    int isum = 0;
    for (int j = 0; j < 16; j++) {
      const int lo = (a[i].qs[j] & 0xF) | (((qh >> j) & 1) << 4);
      const int hi = (a[i].qs[j] >> 4) | (((qh >> (j + 16)) & 1) << 4);
      isum += (lo - 16) * b[i].qs[j] + (hi - 16) * b[i].qs[j + 16];
    }
    s += (fp16_to_fp32(a[i].d) * b[i].d) * (float)isum;
  }
  return s;
}

float dot_q5_1(const void* w, const void* x, int64_t nb) {
  const BlockQ5_1* a = (const BlockQ5_1*)w;
  const BlockQ8A* b = (const BlockQ8A*)x;
  float s = 0.0f;
  for (int64_t i = 0; i < nb; i++) {
    uint32_t qh;
    std::memcpy(&qh, a[i].qh, 4);
    int isum = 0;
    for (int j = 0; j < 16; j++) {
      const int lo = (a[i].qs[j] & 0xF) | (((qh >> j) & 1) << 4);
      const int hi = (a[i].qs[j] >> 4) | (((qh >> (j + 16)) & 1) << 4);
      isum += lo * b[i].qs[j] + hi * b[i].qs[j + 16];
    }
    s += (fp16_to_fp32(a[i].d) * b[i].d) * (float)isum + fp16_to_fp32(a[i].m) * (b[i].d * (float)b[i].sum);
  }
  return s;
}

float dot_q8_0(const void* w, const void* x, int64_t nb) {
  const BlockQ8_0* a = (const BlockQ8_0*)w;
  const BlockQ8A* b = (const BlockQ8A*)x;
  float s = 0.0f;
  for (int64_t i = 0; i < nb; i++) {
    int isum = 0;
    for (int j = 0; j < 32; j++) isum += a[i].qs[j] * b[i].qs[j];
    s += (fp16_to_fp32(a[i].d) * b[i].d) * (float)isum;
  }
  return s;
}

float dot_iq4_nl(const void* w, const void* x, int64_t nb) {
  const BlockIQ4_NL* a = (const BlockIQ4_NL*)w;
  const BlockQ8A* b = (const BlockQ8A*)x;
  float s = 0.0f;
  for (int64_t i = 0; i < nb; i++) {
    int isum = 0;
    for (int j = 0; j < 16; j++) {
      isum += kIQ4NLValues[a[i].qs[j] & 0xF] * b[i].qs[j];
      isum += kIQ4NLValues[a[i].qs[j] >> 4] * b[i].qs[j + 16];
    }
    s += (fp16_to_fp32(a[i].d) * b[i].d) * (float)isum;
  }
  return s;
}

float dot_q2_k(const void* w, const void* x, int64_t nb) {
  const BlockQ2_K* a = (const BlockQ2_K*)w;
  const BlockQ8_K* b = (const BlockQ8_K*)x;
  float s = 0.0f;
  for (int64_t i = 0; i < nb; i++) {
    int isum = 0, msum = 0;
    for (int g = 0; g < 16; g++) {
      int gsum = 0;
      for (int l = 0; l < 16; l++) {
        const int k = 16 * g + l;
        const int q = (a[i].qs[32 * (k / 128) + k % 32] >> (2 * ((k % 128) / 32))) & 3;
        gsum += q * b[i].qs[k];
      }
      isum += (a[i].scales[g] & 0xF) * gsum;
      msum += (a[i].scales[g] >> 4) * b[i].bsums[g];
    }
    s += (fp16_to_fp32(a[i].d) * b[i].d) * (float)isum - (fp16_to_fp32(a[i].dmin) * b[i].d) * (float)msum;
  }
  return s;
}

float dot_q3_k(const void* w, const void* x, int64_t nb) {
  const BlockQ3_K* a = (const BlockQ3_K*)w;
  const BlockQ8_K* b = (const BlockQ8_K*)x;
  int8_t scales[16];
  float s = 0.0f;
  for (int64_t i = 0; i < nb; i++) {
    unpack_q3k_scales(a[i].scales, scales);
    int isum = 0;
    for (int g = 0; g < 16; g++) {
      int gsum = 0;
      for (int l = 0; l < 16; l++) {
        const int k = 16 * g + l;
        const int lo = (a[i].qs[32 * (k / 128) + k % 32] >> (2 * ((k % 128) / 32))) & 3;
        const int hbit = (a[i].hmask[k % 32] >> (k / 32)) & 1;
        gsum += (lo - (hbit ? 0 : 4)) * b[i].qs[k];
      }
      isum += scales[g] * gsum;
    }
    s += (fp16_to_fp32(a[i].d) * b[i].d) * (float)isum;
  }
  return s;
}

float dot_q4_k(const void* w, const void* x, int64_t nb) {
  const BlockQ4_K* a = (const BlockQ4_K*)w;
  const BlockQ8_K* b = (const BlockQ8_K*)x;
  float s = 0.0f;
  for (int64_t i = 0; i < nb; i++) {
    int isum = 0, msum = 0;
    for (int j = 0; j < 8; j++) {
      uint8_t sc, m;
      get_scale_min_k4(j, a[i].scales, &sc, &m);
      const uint8_t* q = a[i].qs + 32 * (j / 2);
      const int shift = 4 * (j % 2);
      int gsum = 0;
      for (int l = 0; l < 32; l++) gsum += ((q[l] >> shift) & 0xF) * b[i].qs[32 * j + l];
      isum += sc * gsum;
      msum += m * (b[i].bsums[2 * j] + b[i].bsums[2 * j + 1]);
    }
    s += (fp16_to_fp32(a[i].d) * b[i].d) * (float)isum - (fp16_to_fp32(a[i].dmin) * b[i].d) * (float)msum;
  }
  return s;
}

float dot_q5_k(const void* w, const void* x, int64_t nb) {
  const BlockQ5_K* a = (const BlockQ5_K*)w;
  const BlockQ8_K* b = (const BlockQ8_K*)x;
  float s = 0.0f;
  for (int64_t i = 0; i < nb; i++) {
    int isum = 0, msum = 0;
    for (int j = 0; j < 8; j++) {
      uint8_t sc, m;
      get_scale_min_k4(j, a[i].scales, &sc, &m);
      const uint8_t* q = a[i].qs + 32 * (j / 2);
      const int shift = 4 * (j % 2);
      int gsum = 0;
      for (int l = 0; l < 32; l++) {
        const int v = ((q[l] >> shift) & 0xF) | (((a[i].qh[l] >> j) & 1) << 4);
        gsum += v * b[i].qs[32 * j + l];
      }
      isum += sc * gsum;
      msum += m * (b[i].bsums[2 * j] + b[i].bsums[2 * j + 1]);
    }
    s += (fp16_to_fp32(a[i].d) * b[i].d) * (float)isum - (fp16_to_fp32(a[i].dmin) * b[i].d) * (float)msum;
  }
  return s;
}

float dot_q6_k(const void* w, const void* x, int64_t nb) {
  const BlockQ6_K* a = (const BlockQ6_K*)w;
  const BlockQ8_K* b = (const BlockQ8_K*)x;
  float s = 0.0f;
  for (int64_t i = 0; i < nb; i++) {
    int isum = 0;
    for (int g = 0; g < 16; g++) {
      int gsum = 0;
      for (int l = 0; l < 16; l++) {
        const int k = 16 * g + l;
        const int half = k / 128, q4 = (k % 128) / 32, p = k % 32;
        const uint8_t qlb = a[i].ql[64 * half + 32 * (q4 % 2) + p];
        const int lo = (q4 < 2) ? (qlb & 0xF) : (qlb >> 4);
        const int hi = (a[i].qh[32 * half + p] >> (2 * q4)) & 3;
        gsum += ((lo | (hi << 4)) - 32) * b[i].qs[k];
      }
      isum += a[i].scales[g] * gsum;
    }
    s += (fp16_to_fp32(a[i].d) * b[i].d) * (float)isum;
  }
  return s;
}

float dot_iq4_xs(const void* w, const void* x, int64_t nb) {
  const BlockIQ4_XS* a = (const BlockIQ4_XS*)w;
  const BlockQ8_K* b = (const BlockQ8_K*)x;
  float s = 0.0f;
  for (int64_t i = 0; i < nb; i++) {
    int isum = 0;
    for (int j = 0; j < 8; j++) {
      const int ls = (((a[i].scales_l[j / 2] >> (4 * (j % 2))) & 0xF) | (((a[i].scales_h >> (2 * j)) & 3) << 4)) - 32;
      const uint8_t* q = a[i].qs + 16 * j;
      const int8_t* y = b[i].qs + 32 * j;
      int gsum = 0;
      for (int l = 0; l < 16; l++) {
        gsum += kIQ4NLValues[q[l] & 0xF] * y[l] + kIQ4NLValues[q[l] >> 4] * y[l + 16];
      }
      isum += ls * gsum;
    }
    s += (fp16_to_fp32(a[i].d) * b[i].d) * (float)isum;
  }
  return s;
}

using DotFn = float (*)(const void* w, const void* x, int64_t nb);

// Loops over every (m, n) pair with one dot product each. nb counts weight
// blocks (values for the float types, whose block size is 1).
void matmul_with(DotFn dot, const uint8_t* W, size_t wrb, const uint8_t* X, size_t xrb, int64_t M,
                 int64_t nb, float* Y, int64_t ldy, int64_t n0, int64_t n1) {
  for (int64_t n = n0; n < n1; n++) {
    for (int64_t m = 0; m < M; m++) Y[m * ldy + n] = dot(W + n * wrb, X + m * xrb, nb);
  }
}

#define LL_GENERIC_MATMUL(name, dot)                                                         \
  void name(const uint8_t* W, size_t wrb, const uint8_t* X, size_t xrb, int64_t M, int64_t nb, \
            float* Y, int64_t ldy, int64_t n0, int64_t n1) {                                   \
    matmul_with(dot, W, wrb, X, xrb, M, nb, Y, ldy, n0, n1);                                   \
  }

LL_GENERIC_MATMUL(mm_f32, dot_f32)
LL_GENERIC_MATMUL(mm_f16, dot_f16)
LL_GENERIC_MATMUL(mm_bf16, dot_bf16)
LL_GENERIC_MATMUL(mm_q4_0, dot_q4_0)
LL_GENERIC_MATMUL(mm_q4_1, dot_q4_1)
LL_GENERIC_MATMUL(mm_q5_0, dot_q5_0)
LL_GENERIC_MATMUL(mm_q5_1, dot_q5_1)
LL_GENERIC_MATMUL(mm_q8_0, dot_q8_0)
LL_GENERIC_MATMUL(mm_iq4_nl, dot_iq4_nl)
LL_GENERIC_MATMUL(mm_q2_k, dot_q2_k)
LL_GENERIC_MATMUL(mm_q3_k, dot_q3_k)
LL_GENERIC_MATMUL(mm_q4_k, dot_q4_k)
LL_GENERIC_MATMUL(mm_q5_k, dot_q5_k)
LL_GENERIC_MATMUL(mm_q6_k, dot_q6_k)
LL_GENERIC_MATMUL(mm_iq4_xs, dot_iq4_xs)
#undef LL_GENERIC_MATMUL

}  // namespace

void fill_generic_kernels(KernelTable* t) {
  t->quantize_q8a = quantize_row_q8a;
  t->quantize_q8k = quantize_row_q8k;
  t->matmul[TYPE_F32] = mm_f32;
  t->matmul[TYPE_F16] = mm_f16;
  t->matmul[TYPE_BF16] = mm_bf16;
  t->matmul[TYPE_Q4_0] = mm_q4_0;
  t->matmul[TYPE_Q4_1] = mm_q4_1;
  t->matmul[TYPE_Q5_0] = mm_q5_0;
  t->matmul[TYPE_Q5_1] = mm_q5_1;
  t->matmul[TYPE_Q8_0] = mm_q8_0;
  t->matmul[TYPE_IQ4_NL] = mm_iq4_nl;
  t->matmul[TYPE_Q2_K] = mm_q2_k;
  t->matmul[TYPE_Q3_K] = mm_q3_k;
  t->matmul[TYPE_Q4_K] = mm_q4_k;
  t->matmul[TYPE_Q5_K] = mm_q5_k;
  t->matmul[TYPE_Q6_K] = mm_q6_k;
  t->matmul[TYPE_IQ4_XS] = mm_iq4_xs;
  fill_generic_attn(&t->attn);
}

}  // namespace ll
