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

}  // namespace avx512

void fill_attn_avx512(AttnFns* t) {
  t->dot = avx512::dot;
  t->axpy = avx512::axpy;
  t->dot_f16 = avx512::dot_f16;
  t->axpy_f16 = avx512::axpy_f16;
}

}  // namespace ll
