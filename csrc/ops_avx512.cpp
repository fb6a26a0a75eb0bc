// ops_avx512.cpp - AVX-512 attention primitives (see ops_simd.h).
#include <immintrin.h>

#include <cstdint>

#include "ops_simd.h"

namespace ll {
namespace avx512 {

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

// --- attention ---------------------------------------------------------------------

static void f16_to_f32(float* dst, const uint16_t* src, int64_t n) {
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    _mm512_storeu_ps(dst + i, _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i*)(src + i))));
  }
  if (i < n) {
    const __mmask16 m = (__mmask16)((1u << (n - i)) - 1u);
    _mm512_mask_storeu_ps(dst + i, m, _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, src + i)));
  }
}

// Lane j = the sum of the 16 lanes of a[j], by a fixed tree (a is overwritten).
static __m512 transpose_sum16(__m512* a) {
  __m512 b[8], c[4], e[2];
  for (int i = 0; i < 8; ++i) {      // 128-bit halves: [a0.c0+a0.c2, a0.c1+a0.c3, a1.c0+a1.c2, a1.c1+a1.c3]
    b[i] = _mm512_add_ps(_mm512_shuffle_f32x4(a[2 * i], a[2 * i + 1], _MM_SHUFFLE(1, 0, 1, 0)),
                         _mm512_shuffle_f32x4(a[2 * i], a[2 * i + 1], _MM_SHUFFLE(3, 2, 3, 2)));
  }
  for (int i = 0; i < 4; ++i) {      // 128-bit chunk k: 4 partial sums of a[4i + k]
    c[i] = _mm512_add_ps(_mm512_shuffle_f32x4(b[2 * i], b[2 * i + 1], _MM_SHUFFLE(2, 0, 2, 0)),
                         _mm512_shuffle_f32x4(b[2 * i], b[2 * i + 1], _MM_SHUFFLE(3, 1, 3, 1)));
  }
  for (int i = 0; i < 2; ++i) {      // within each chunk k: 2 partial sums each of c[2i], c[2i+1]
    e[i] = _mm512_add_ps(_mm512_shuffle_ps(c[2 * i], c[2 * i + 1], _MM_SHUFFLE(1, 0, 1, 0)),
                         _mm512_shuffle_ps(c[2 * i], c[2 * i + 1], _MM_SHUFFLE(3, 2, 3, 2)));
  }
  // lane 4k + i: the sum of a[4i + k]
  const __m512 f = _mm512_add_ps(_mm512_shuffle_ps(e[0], e[1], _MM_SHUFFLE(2, 0, 2, 0)),
                                 _mm512_shuffle_ps(e[0], e[1], _MM_SHUFFLE(3, 1, 3, 1)));
  const __m512i idx = _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
  return _mm512_permutexvar_ps(idx, f);
}

// See AttnFns::attn_chunk: the 16 keys' scores in the lanes of one vector.
static void attn_chunk(const float* q, const float* const* k_rows, const float* const* v_rows,
                       int64_t d, int64_t dv, float scale, int32_t a, int32_t b, float* m, float* l,
                       float* acc) {
  __m512 s[16];
  for (int j = 0; j < 16; ++j) s[j] = _mm512_setzero_ps();
  int64_t i = 0;
  for (; i + 16 <= d; i += 16) {
    const __m512 qv = _mm512_loadu_ps(q + i);
    for (int j = 0; j < 16; ++j) s[j] = _mm512_fmadd_ps(qv, _mm512_loadu_ps(k_rows[j] + i), s[j]);
  }
  if (i < d) {
    const __mmask16 mk = (__mmask16)((1u << (d - i)) - 1u);
    const __m512 qv = _mm512_maskz_loadu_ps(mk, q + i);
    for (int j = 0; j < 16; ++j) s[j] = _mm512_fmadd_ps(qv, _mm512_maskz_loadu_ps(mk, k_rows[j] + i), s[j]);
  }
  const __m512 sc = _mm512_mul_ps(transpose_sum16(s), _mm512_set1_ps(scale));
  const __mmask16 valid = (__mmask16)((((1u << (b - a + 1)) - 1u) << a) & 0xffffu);
  const float m_chunk = _mm512_mask_reduce_max_ps(valid, sc);
  const float m_old = *m, m_new = m_old > m_chunk ? m_old : m_chunk;
  const __m512 p = _mm512_maskz_mov_ps(valid, exp_ps(_mm512_sub_ps(sc, _mm512_set1_ps(m_new))));
  const float alpha = m_old == -__builtin_inff()
                          ? 0.0f
                          : _mm_cvtss_f32(_mm512_castps512_ps128(exp_ps(_mm512_set1_ps(m_old - m_new))));
  *l = *l * alpha + _mm512_reduce_add_ps(p);
  *m = m_new;
  float pj[16];
  _mm512_storeu_ps(pj, p);
  const __m512 va = _mm512_set1_ps(alpha);
  int64_t x = 0;
  for (; x + 64 <= dv; x += 64) {    // four vectors of the output at a time
    __m512 r0 = _mm512_mul_ps(_mm512_loadu_ps(acc + x), va);
    __m512 r1 = _mm512_mul_ps(_mm512_loadu_ps(acc + x + 16), va);
    __m512 r2 = _mm512_mul_ps(_mm512_loadu_ps(acc + x + 32), va);
    __m512 r3 = _mm512_mul_ps(_mm512_loadu_ps(acc + x + 48), va);
    for (int32_t j = a; j <= b; ++j) {
      const __m512 w = _mm512_set1_ps(pj[j]);
      const float* v = v_rows[j] + x;
      r0 = _mm512_fmadd_ps(w, _mm512_loadu_ps(v), r0);
      r1 = _mm512_fmadd_ps(w, _mm512_loadu_ps(v + 16), r1);
      r2 = _mm512_fmadd_ps(w, _mm512_loadu_ps(v + 32), r2);
      r3 = _mm512_fmadd_ps(w, _mm512_loadu_ps(v + 48), r3);
    }
    _mm512_storeu_ps(acc + x, r0);
    _mm512_storeu_ps(acc + x + 16, r1);
    _mm512_storeu_ps(acc + x + 32, r2);
    _mm512_storeu_ps(acc + x + 48, r3);
  }
  for (; x < dv; x += 16) {          // the same per element, one vector at a time
    const __mmask16 mk = dv - x >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (dv - x)) - 1u);
    __m512 r = _mm512_mul_ps(_mm512_maskz_loadu_ps(mk, acc + x), va);
    for (int32_t j = a; j <= b; ++j) {
      r = _mm512_fmadd_ps(_mm512_set1_ps(pj[j]), _mm512_maskz_loadu_ps(mk, v_rows[j] + x), r);
    }
    _mm512_mask_storeu_ps(acc + x, mk, r);
  }
}

}  // namespace avx512

void fill_attn_avx512(AttnFns* t) {
  t->silu_mul = avx512::silu_mul;
  t->gelu_mul = avx512::gelu_mul;
  t->f16_to_f32 = avx512::f16_to_f32;
  t->attn_chunk = avx512::attn_chunk;
}

}  // namespace ll
