// ops_avx2.cpp - AVX2/FMA attention primitives (see ops_simd.h).
#include <immintrin.h>

#include <cstdint>

#include "ops_simd.h"

namespace ll {
namespace avx2 {

// e^x for float32 lanes: Cody-Waite range reduction and Cephes' expf polynomial
// (about 1 ulp on [-87, 88]; inputs are clamped to that range).
static const float kExpHi = 88.3762626647949f, kExpLo = -87.3365478515625f;
static const float kLog2e = 1.44269504088896341f, kC1 = 0.693359375f, kC2 = -2.12194440e-4f;
static const float kP0 = 1.9875691500E-4f, kP1 = 1.3981999507E-3f, kP2 = 8.3334519073E-3f;
static const float kP3 = 4.1665795894E-2f, kP4 = 1.6666665459E-1f, kP5 = 5.0000001201E-1f;
static const float kGeluA = 0.79788456080286535588f, kGeluB = 0.044715f;

static __m256 exp_ps(__m256 x) {
  x = _mm256_min_ps(_mm256_max_ps(x, _mm256_set1_ps(kExpLo)), _mm256_set1_ps(kExpHi));
  const __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(kLog2e)),
                                   _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(kC1), x);
  r = _mm256_fnmadd_ps(n, _mm256_set1_ps(kC2), r);
  __m256 p = _mm256_set1_ps(kP0);
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(kP1));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(kP2));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(kP3));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(kP4));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(kP5));
  p = _mm256_fmadd_ps(p, _mm256_mul_ps(r, r), _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
  const __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
  return _mm256_mul_ps(p, _mm256_castsi256_ps(e));
}

static __m256 silu_ps(__m256 x) {
  const __m256 one = _mm256_set1_ps(1.0f);
  return _mm256_div_ps(x, _mm256_add_ps(one, exp_ps(_mm256_sub_ps(_mm256_setzero_ps(), x))));
}

static __m256 gelu_ps(__m256 x) {
  const __m256 x3 = _mm256_mul_ps(_mm256_mul_ps(x, x), x);
  const __m256 u = _mm256_mul_ps(_mm256_set1_ps(-2.0f * kGeluA),
                                 _mm256_fmadd_ps(_mm256_set1_ps(kGeluB), x3, x));
  return _mm256_div_ps(x, _mm256_add_ps(_mm256_set1_ps(1.0f), exp_ps(u)));
}

static void silu_mul(float* x, const float* up, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    _mm256_storeu_ps(x + i, _mm256_mul_ps(silu_ps(_mm256_loadu_ps(x + i)), _mm256_loadu_ps(up + i)));
  }
  for (; i < n; ++i) {   // scalar tail through one padded vector
    float a[8] = {0}, r[8];
    a[0] = x[i];
    _mm256_storeu_ps(r, silu_ps(_mm256_loadu_ps(a)));
    x[i] = r[0] * up[i];
  }
}

static void gelu_mul(float* x, const float* up, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    _mm256_storeu_ps(x + i, _mm256_mul_ps(gelu_ps(_mm256_loadu_ps(x + i)), _mm256_loadu_ps(up + i)));
  }
  for (; i < n; ++i) {
    float a[8] = {0}, r[8];
    a[0] = x[i];
    _mm256_storeu_ps(r, gelu_ps(_mm256_loadu_ps(a)));
    x[i] = r[0] * up[i];
  }
}

// --- attention ---------------------------------------------------------------------

// Mask of the first r lanes (0 <= r <= 8) for maskload.
static __m256i first_lanes(int64_t r) {
  const __m256i idx = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  return _mm256_cmpgt_epi32(_mm256_set1_epi32((int)r), idx);
}

// n (<= 8) values of a cache row from element i as float32; the rest 0.
static __m256 load_row8(const uint8_t* row, int64_t i, int64_t n, bool f16) {
  if (!row) return _mm256_setzero_ps();
  if (f16) {
    const uint16_t* h = reinterpret_cast<const uint16_t*>(row) + i;
    if (n == 8) return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i*)h));
    uint16_t tmp[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    for (int64_t c = 0; c < n; ++c) tmp[c] = h[c];
    return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i*)tmp));
  }
  return _mm256_maskload_ps(reinterpret_cast<const float*>(row) + i, first_lanes(n));
}

// In place 8 x 8 transpose: r[c] lane j becomes the old r[j] lane c.
static void transpose8(__m256* r) {
  __m256 t[8], s[8];
  for (int k = 0; k < 4; ++k) {
    t[2 * k] = _mm256_unpacklo_ps(r[2 * k], r[2 * k + 1]);
    t[2 * k + 1] = _mm256_unpackhi_ps(r[2 * k], r[2 * k + 1]);
  }
  for (int g = 0; g < 2; ++g) {      // half L of s[4g + c]: rows 4g..4g+3 of column 4L + c
    s[4 * g + 0] = _mm256_shuffle_ps(t[4 * g], t[4 * g + 2], 0x44);
    s[4 * g + 1] = _mm256_shuffle_ps(t[4 * g], t[4 * g + 2], 0xEE);
    s[4 * g + 2] = _mm256_shuffle_ps(t[4 * g + 1], t[4 * g + 3], 0x44);
    s[4 * g + 3] = _mm256_shuffle_ps(t[4 * g + 1], t[4 * g + 3], 0xEE);
  }
  for (int c = 0; c < 4; ++c) {
    r[c] = _mm256_permute2f128_ps(s[c], s[4 + c], 0x20);
    r[4 + c] = _mm256_permute2f128_ps(s[c], s[4 + c], 0x31);
  }
}

static void load_chunk(const uint8_t* const* k_rows, const uint8_t* const* v_rows, int64_t d,
                       int64_t dv, bool f16, float* kt, float* vb) {
  static_assert(kAttnChunk == 16, "two groups of 8 keys");
  for (int g = 0; g < 2; ++g) {                      // keys: 8 x 8 tiles, transposed
    for (int64_t i = 0; i < d; i += 8) {
      const int64_t n = d - i < 8 ? d - i : 8;
      __m256 r[8];
#pragma GCC unroll 8
      for (int j = 0; j < 8; ++j) r[j] = load_row8(k_rows[8 * g + j], i, n, f16);
      transpose8(r);
#pragma GCC unroll 8
      for (int c = 0; c < 8; ++c) _mm256_storeu_ps(kt + (i + c) * 16 + 8 * g, r[c]);   // kt has room
    }
  }
  for (int j = 0; j < 16; ++j) {                     // values: row-major
    if (!v_rows[j]) continue;
    for (int64_t i = 0; i < dv; i += 8) {
      const int64_t n = dv - i < 8 ? dv - i : 8;
      _mm256_maskstore_ps(vb + j * dv + i, first_lanes(n), load_row8(v_rows[j], i, n, f16));
    }
  }
}

// The scaled scores of keys 8g..8g+7: four partial sums over the head dimension.
static __m256 scores8(const float* q, const float* kt, int64_t d, float scale) {
  __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps(), s2 = _mm256_setzero_ps(),
         s3 = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + 4 <= d; i += 4) {
    s0 = _mm256_fmadd_ps(_mm256_set1_ps(q[i]), _mm256_loadu_ps(kt + i * 16), s0);
    s1 = _mm256_fmadd_ps(_mm256_set1_ps(q[i + 1]), _mm256_loadu_ps(kt + i * 16 + 16), s1);
    s2 = _mm256_fmadd_ps(_mm256_set1_ps(q[i + 2]), _mm256_loadu_ps(kt + i * 16 + 32), s2);
    s3 = _mm256_fmadd_ps(_mm256_set1_ps(q[i + 3]), _mm256_loadu_ps(kt + i * 16 + 48), s3);
  }
  for (; i < d; ++i) {
    __m256* sp = i % 4 == 0 ? &s0 : i % 4 == 1 ? &s1 : i % 4 == 2 ? &s2 : &s3;
    *sp = _mm256_fmadd_ps(_mm256_set1_ps(q[i]), _mm256_loadu_ps(kt + i * 16), *sp);
  }
  return _mm256_mul_ps(_mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3)), _mm256_set1_ps(scale));
}

// See AttnFns::attn_chunk: two groups of 8 keys; a group with no slot in [a, b] is skipped.
static void attn_chunk(const float* q, const float* kt, const float* vb, int64_t d, int64_t dv,
                       float scale, int32_t a, int32_t b, float* m, float* l, float* acc) {
  float sc[16];
  for (int g = 0; g < 2; ++g) {
    if (8 * g > b || 8 * g + 7 < a) continue;
    _mm256_storeu_ps(sc + 8 * g, scores8(q, kt + 8 * g, d, scale));
  }
  float m_chunk = sc[a];
  for (int32_t j = a + 1; j <= b; ++j) m_chunk = sc[j] > m_chunk ? sc[j] : m_chunk;
  const float m_old = *m, m_new = m_old > m_chunk ? m_old : m_chunk;
  float pj[16];
  const __m256 vm = _mm256_set1_ps(m_new);
  __m256 psum = _mm256_setzero_ps();
  for (int g = 0; g < 2; ++g) {      // p = exp(score - m_new) on [a, b], 0 elsewhere
    __m256 p = _mm256_setzero_ps();
    if (!(8 * g > b || 8 * g + 7 < a)) {
      const __m256i lane = _mm256_setr_epi32(8 * g, 8 * g + 1, 8 * g + 2, 8 * g + 3, 8 * g + 4,
                                             8 * g + 5, 8 * g + 6, 8 * g + 7);
      const __m256i in = _mm256_and_si256(_mm256_cmpgt_epi32(lane, _mm256_set1_epi32(a - 1)),
                                          _mm256_cmpgt_epi32(_mm256_set1_epi32(b + 1), lane));
      p = _mm256_and_ps(exp_ps(_mm256_sub_ps(_mm256_loadu_ps(sc + 8 * g), vm)), _mm256_castsi256_ps(in));
    }
    _mm256_storeu_ps(pj + 8 * g, p);
    psum = _mm256_add_ps(psum, p);
  }
  float alpha = 0.0f;
  if (m_old != -__builtin_inff()) {
    float e[8];
    _mm256_storeu_ps(e, exp_ps(_mm256_set1_ps(m_old - m_new)));
    alpha = e[0];
  }
  __m128 h = _mm_add_ps(_mm256_castps256_ps128(psum), _mm256_extractf128_ps(psum, 1));
  h = _mm_add_ps(h, _mm_movehl_ps(h, h));
  h = _mm_add_ss(h, _mm_movehdup_ps(h));
  *l = *l * alpha + _mm_cvtss_f32(h);
  *m = m_new;
  const __m256 va = _mm256_set1_ps(alpha);
  int64_t x = 0;
  for (; x + 32 <= dv; x += 32) {    // four vectors of the output at a time
    __m256 r0 = _mm256_mul_ps(_mm256_loadu_ps(acc + x), va);
    __m256 r1 = _mm256_mul_ps(_mm256_loadu_ps(acc + x + 8), va);
    __m256 r2 = _mm256_mul_ps(_mm256_loadu_ps(acc + x + 16), va);
    __m256 r3 = _mm256_mul_ps(_mm256_loadu_ps(acc + x + 24), va);
    for (int32_t j = a; j <= b; ++j) {
      const __m256 w = _mm256_set1_ps(pj[j]);
      const float* v = vb + j * dv + x;
      r0 = _mm256_fmadd_ps(w, _mm256_loadu_ps(v), r0);
      r1 = _mm256_fmadd_ps(w, _mm256_loadu_ps(v + 8), r1);
      r2 = _mm256_fmadd_ps(w, _mm256_loadu_ps(v + 16), r2);
      r3 = _mm256_fmadd_ps(w, _mm256_loadu_ps(v + 24), r3);
    }
    _mm256_storeu_ps(acc + x, r0);
    _mm256_storeu_ps(acc + x + 8, r1);
    _mm256_storeu_ps(acc + x + 16, r2);
    _mm256_storeu_ps(acc + x + 24, r3);
  }
  for (; x < dv; x += 8) {           // the same per element, one vector at a time
    const __m256i mk = first_lanes(dv - x < 8 ? dv - x : 8);
    __m256 r = _mm256_mul_ps(_mm256_maskload_ps(acc + x, mk), va);
    for (int32_t j = a; j <= b; ++j) {
      r = _mm256_fmadd_ps(_mm256_set1_ps(pj[j]), _mm256_maskload_ps(vb + j * dv + x, mk), r);
    }
    _mm256_maskstore_ps(acc + x, mk, r);
  }
}

}  // namespace avx2

void fill_attn_avx2(AttnFns* t) {
  t->silu_mul = avx2::silu_mul;
  t->gelu_mul = avx2::gelu_mul;
  t->load_chunk = avx2::load_chunk;
  t->attn_chunk = avx2::attn_chunk;
  t->attn_chunk_rows = nullptr;
  t->attn_chunk_rows_multi = nullptr;
  t->attn_chunk_pair = nullptr;
}

}  // namespace ll
