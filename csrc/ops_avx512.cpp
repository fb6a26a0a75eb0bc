// ops_avx512.cpp - AVX-512 attention primitives (see ops_simd.h).
#include <immintrin.h>

#include <cstdint>

#include "ops_simd.h"

namespace ll {
namespace avx512 {

static float dot(const float* a, const float* b, int64_t n) {
  __m512 acc0 = _mm512_setzero_ps(), acc1 = _mm512_setzero_ps();
  int64_t i = 0;
  for (; i + 32 <= n; i += 32) {
    acc0 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i), acc0);
    acc1 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i + 16), _mm512_loadu_ps(b + i + 16), acc1);
  }
  for (; i + 16 <= n; i += 16) {
    acc0 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i), acc0);
  }
  float s = _mm512_reduce_add_ps(_mm512_add_ps(acc0, acc1));
  for (; i < n; ++i) s += a[i] * b[i];
  return s;
}

static void axpy(float* y, float a, const float* x, int64_t n) {
  const __m512 va = _mm512_set1_ps(a);
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    _mm512_storeu_ps(y + i, _mm512_fmadd_ps(va, _mm512_loadu_ps(x + i), _mm512_loadu_ps(y + i)));
  }
  for (; i < n; ++i) y[i] += a * x[i];
}

static float half_to_float(uint16_t h) {
  return _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(h)));
}

static float dot_f16(const float* a, const uint16_t* b, int64_t n) {
  __m512 acc0 = _mm512_setzero_ps(), acc1 = _mm512_setzero_ps();
  int64_t i = 0;
  for (; i + 32 <= n; i += 32) {
    const __m512 b0 = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i*)(b + i)));
    const __m512 b1 = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i*)(b + i + 16)));
    acc0 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i), b0, acc0);
    acc1 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i + 16), b1, acc1);
  }
  for (; i + 16 <= n; i += 16) {
    const __m512 b0 = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i*)(b + i)));
    acc0 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i), b0, acc0);
  }
  float s = _mm512_reduce_add_ps(_mm512_add_ps(acc0, acc1));
  for (; i < n; ++i) s += a[i] * half_to_float(b[i]);
  return s;
}

static void axpy_f16(float* y, float a, const uint16_t* x, int64_t n) {
  const __m512 va = _mm512_set1_ps(a);
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    const __m512 vx = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i*)(x + i)));
    _mm512_storeu_ps(y + i, _mm512_fmadd_ps(va, vx, _mm512_loadu_ps(y + i)));
  }
  for (; i < n; ++i) y[i] += a * half_to_float(x[i]);
}


// e^x for float32 lanes: Cody-Waite range reduction and Cephes' expf polynomial
// (about 1 ulp on [-87, 88]; inputs are clamped to that range).
static const float kExpHi = 88.3762626647949f, kExpLo = -87.3365478515625f;
static const float kLog2e = 1.44269504088896341f, kC1 = 0.693359375f, kC2 = -2.12194440e-4f;
static const float kP0 = 1.9875691500E-4f, kP1 = 1.3981999507E-3f, kP2 = 8.3334519073E-3f;
static const float kP3 = 4.1665795894E-2f, kP4 = 1.6666665459E-1f, kP5 = 5.0000001201E-1f;
static const float kGeluA = 0.79788456080286535588f, kGeluB = 0.044715f;

static __m512 exp_ps(__m512 x) {
  x = _mm512_min_ps(_mm512_max_ps(x, _mm512_set1_ps(kExpLo)), _mm512_set1_ps(kExpHi));
  const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(kLog2e)),
                                        _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(kC1), x);
  r = _mm512_fnmadd_ps(n, _mm512_set1_ps(kC2), r);
  __m512 p = _mm512_set1_ps(kP0);
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(kP1));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(kP2));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(kP3));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(kP4));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(kP5));
  p = _mm512_fmadd_ps(p, _mm512_mul_ps(r, r), _mm512_add_ps(r, _mm512_set1_ps(1.0f)));
  return _mm512_scalef_ps(p, n);
}

// x / (1 + e^-z): silu when z = x; gelu_tanh when z = 2 * a * (x + b * x^3).
static __m512 silu_ps(__m512 x) {
  const __m512 one = _mm512_set1_ps(1.0f);
  return _mm512_div_ps(x, _mm512_add_ps(one, exp_ps(_mm512_sub_ps(_mm512_setzero_ps(), x))));
}

static __m512 gelu_ps(__m512 x) {
  const __m512 x3 = _mm512_mul_ps(_mm512_mul_ps(x, x), x);
  const __m512 u = _mm512_mul_ps(_mm512_set1_ps(-2.0f * kGeluA),
                                 _mm512_fmadd_ps(_mm512_set1_ps(kGeluB), x3, x));
  return _mm512_div_ps(x, _mm512_add_ps(_mm512_set1_ps(1.0f), exp_ps(u)));
}

static void silu_mul(float* x, const float* up, int64_t n) {
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    _mm512_storeu_ps(x + i, _mm512_mul_ps(silu_ps(_mm512_loadu_ps(x + i)), _mm512_loadu_ps(up + i)));
  }
  if (i < n) {
    const __mmask16 m = (__mmask16)((1u << (n - i)) - 1u);
    const __m512 v = silu_ps(_mm512_maskz_loadu_ps(m, x + i));
    _mm512_mask_storeu_ps(x + i, m, _mm512_mul_ps(v, _mm512_maskz_loadu_ps(m, up + i)));
  }
}

static void gelu_mul(float* x, const float* up, int64_t n) {
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    _mm512_storeu_ps(x + i, _mm512_mul_ps(gelu_ps(_mm512_loadu_ps(x + i)), _mm512_loadu_ps(up + i)));
  }
  if (i < n) {
    const __mmask16 m = (__mmask16)((1u << (n - i)) - 1u);
    const __m512 v = gelu_ps(_mm512_maskz_loadu_ps(m, x + i));
    _mm512_mask_storeu_ps(x + i, m, _mm512_mul_ps(v, _mm512_maskz_loadu_ps(m, up + i)));
  }
}

}  // namespace avx512

void fill_attn_avx512(AttnFns* t) {
  t->silu_mul = avx512::silu_mul;
  t->gelu_mul = avx512::gelu_mul;
  t->dot = avx512::dot;
  t->axpy = avx512::axpy;
  t->dot_f16 = avx512::dot_f16;
  t->axpy_f16 = avx512::axpy_f16;
}

}  // namespace ll
