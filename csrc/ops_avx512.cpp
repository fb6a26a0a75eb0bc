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

// 16 values of a cache row from element i as float32 (the first `n` lanes; the rest 0).
static inline __attribute__((always_inline))
__m512 load_row16(const uint8_t* row, int64_t i, __mmask16 mk, bool f16) {
  if (!row) return _mm512_setzero_ps();
  if (f16) {
    return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(mk, reinterpret_cast<const uint16_t*>(row) + i));
  }
  return _mm512_maskz_loadu_ps(mk, reinterpret_cast<const float*>(row) + i);
}

// In place: r[c] lane j becomes the old r[j] lane c (a 16 x 16 transpose).
static void transpose16(__m512* r) {
  __m512 t[16], s[16];
#pragma GCC unroll 8
  for (int k = 0; k < 8; ++k) {      // lane L of t[2k], t[2k+1]: pairs of rows 2k, 2k+1
    t[2 * k] = _mm512_unpacklo_ps(r[2 * k], r[2 * k + 1]);
    t[2 * k + 1] = _mm512_unpackhi_ps(r[2 * k], r[2 * k + 1]);
  }
#pragma GCC unroll 4
  for (int g = 0; g < 4; ++g) {      // lane L of s[4g + c]: rows 4g..4g+3 of column 4L + c
    s[4 * g + 0] = _mm512_shuffle_ps(t[4 * g], t[4 * g + 2], 0x44);
    s[4 * g + 1] = _mm512_shuffle_ps(t[4 * g], t[4 * g + 2], 0xEE);
    s[4 * g + 2] = _mm512_shuffle_ps(t[4 * g + 1], t[4 * g + 3], 0x44);
    s[4 * g + 3] = _mm512_shuffle_ps(t[4 * g + 1], t[4 * g + 3], 0xEE);
  }
#pragma GCC unroll 4
  for (int c = 0; c < 4; ++c) {      // 4 x 4 transpose of the 128-bit lanes of s[c], s[4 + c], ...
    const __m512 u0 = _mm512_shuffle_f32x4(s[c], s[4 + c], 0x44);
    const __m512 u1 = _mm512_shuffle_f32x4(s[c], s[4 + c], 0xEE);
    const __m512 u2 = _mm512_shuffle_f32x4(s[8 + c], s[12 + c], 0x44);
    const __m512 u3 = _mm512_shuffle_f32x4(s[8 + c], s[12 + c], 0xEE);
    r[c] = _mm512_shuffle_f32x4(u0, u2, 0x88);
    r[4 + c] = _mm512_shuffle_f32x4(u0, u2, 0xDD);
    r[8 + c] = _mm512_shuffle_f32x4(u1, u3, 0x88);
    r[12 + c] = _mm512_shuffle_f32x4(u1, u3, 0xDD);
  }
}

static void load_chunk(const uint8_t* const* k_rows, const uint8_t* const* v_rows, int64_t d,
                       int64_t dv, bool f16, float* kt, float* vb) {
  for (int64_t i = 0; i < d; i += 16) {            // keys: 16 x 16 tiles, transposed (kt: d rounded up to 16 rows)
    const int64_t n = d - i < 16 ? d - i : 16;
    const __mmask16 mk = (__mmask16)((1u << n) - 1u);
    __m512 r[16];
#pragma GCC unroll 16
    for (int j = 0; j < 16; ++j) r[j] = load_row16(k_rows[j], i, mk, f16);
    transpose16(r);
#pragma GCC unroll 16
    for (int c = 0; c < 16; ++c) _mm512_storeu_ps(kt + (i + c) * 16, r[c]);   // kt has room
  }
  for (int j = 0; j < 16; ++j) {                     // values: row-major
    if (!v_rows[j]) continue;
    for (int64_t i = 0; i < dv; i += 16) {
      const __mmask16 mk = dv - i >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (dv - i)) - 1u);
      _mm512_mask_storeu_ps(vb + j * dv + i, mk, load_row16(v_rows[j], i, mk, f16));
    }
  }
}

// The sum of the 16 lane-classes x[0..15] by one fixed tree:
//   y_r = x_r + x_{r+8}; z_r = y_r + y_{r+4}; w_r = z_r + z_{r+2}; w_0 + w_1.
// Both score paths below use it, so a key's score is bitwise the same in either.
static inline __attribute__((always_inline))
__m512 tree_sum16(const __m512* x) {
  __m512 y[8], z[4];
#pragma GCC unroll 8
  for (int r = 0; r < 8; ++r) y[r] = _mm512_add_ps(x[r], x[r + 8]);
#pragma GCC unroll 4
  for (int r = 0; r < 4; ++r) z[r] = _mm512_add_ps(y[r], y[r + 4]);
  return _mm512_add_ps(_mm512_add_ps(z[0], z[2]), _mm512_add_ps(z[1], z[3]));
}

// Lane j = tree_sum16 of the 16 lanes of a[j] (the same tree, done across lanes).
static inline __attribute__((always_inline))
__m512 transpose_sum16(const __m512* a) {
  __m512 b[8], c[4], e[2];
#pragma GCC unroll 8
  for (int i = 0; i < 8; ++i) {      // y: 128-bit chunk 0 + 2, 1 + 3 of a[2i] | of a[2i + 1]
    b[i] = _mm512_add_ps(_mm512_shuffle_f32x4(a[2 * i], a[2 * i + 1], _MM_SHUFFLE(1, 0, 1, 0)),
                         _mm512_shuffle_f32x4(a[2 * i], a[2 * i + 1], _MM_SHUFFLE(3, 2, 3, 2)));
  }
#pragma GCC unroll 4
  for (int i = 0; i < 4; ++i) {      // z: chunk k holds a[4i + k]'s y_r + y_{r+4}
    c[i] = _mm512_add_ps(_mm512_shuffle_f32x4(b[2 * i], b[2 * i + 1], _MM_SHUFFLE(2, 0, 2, 0)),
                         _mm512_shuffle_f32x4(b[2 * i], b[2 * i + 1], _MM_SHUFFLE(3, 1, 3, 1)));
  }
#pragma GCC unroll 2
  for (int i = 0; i < 2; ++i) {      // w: z_r + z_{r+2}
    e[i] = _mm512_add_ps(_mm512_shuffle_ps(c[2 * i], c[2 * i + 1], _MM_SHUFFLE(1, 0, 1, 0)),
                         _mm512_shuffle_ps(c[2 * i], c[2 * i + 1], _MM_SHUFFLE(3, 2, 3, 2)));
  }
  // w_0 + w_1; lane 4k + i holds a[4i + k]
  const __m512 f = _mm512_add_ps(_mm512_shuffle_ps(e[0], e[1], _MM_SHUFFLE(2, 0, 2, 0)),
                                 _mm512_shuffle_ps(e[0], e[1], _MM_SHUFFLE(3, 1, 3, 1)));
  const __m512i idx = _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
  return _mm512_permutexvar_ps(idx, f);
}

// Scores from the transposed chunk: lane-class r accumulates i = r, r + 16, ... (FMA chain).
static inline __attribute__((always_inline))
__m512 scores_kt(const float* q, const float* kt, int64_t d) {
  __m512 x[16];
#pragma GCC unroll 16
  for (int r = 0; r < 16; ++r) x[r] = _mm512_setzero_ps();
  int64_t i = 0;
  for (; i + 16 <= d; i += 16) {
#pragma GCC unroll 16
    for (int r = 0; r < 16; ++r) {
      x[r] = _mm512_fmadd_ps(_mm512_set1_ps(q[i + r]), _mm512_loadu_ps(kt + (i + r) * 16), x[r]);
    }
  }
  if (i < d) {                       // zero-padded tail, as the masked loads of scores_rows
#pragma GCC unroll 16
    for (int r = 0; r < 16; ++r) {
      const float qr = i + r < d ? q[i + r] : 0.0f;
      x[r] = _mm512_fmadd_ps(_mm512_set1_ps(qr), _mm512_loadu_ps(kt + (i + r) * 16), x[r]);
    }
  }
  return tree_sum16(x);
}

// Scores straight from the cache rows: key j's lanes accumulate the same chains.
static inline __attribute__((always_inline))
__m512 scores_rows(const float* q, const uint8_t* const* k_rows, int64_t d, bool f16) {
  __m512 a[16];
#pragma GCC unroll 16
  for (int j = 0; j < 16; ++j) a[j] = _mm512_setzero_ps();
  for (int64_t i = 0; i < d; i += 16) {
    const __mmask16 mk = d - i >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (d - i)) - 1u);
    const __m512 qv = _mm512_maskz_loadu_ps(mk, q + i);
#pragma GCC unroll 16
    for (int j = 0; j < 16; ++j) a[j] = _mm512_fmadd_ps(qv, load_row16(k_rows[j], i, mk, f16), a[j]);
  }
  return transpose_sum16(a);
}

// The online-softmax update from one chunk's scaled scores; p receives the weights.
static inline __attribute__((always_inline))
float softmax_update(__m512 sc, int32_t a, int32_t b, float* m, float* l, float* p) {
  const __mmask16 valid = (__mmask16)((((1u << (b - a + 1)) - 1u) << a) & 0xffffu);
  const float m_chunk = _mm512_mask_reduce_max_ps(valid, sc);
  const float m_old = *m, m_new = m_old > m_chunk ? m_old : m_chunk;
  const __m512 pv = _mm512_maskz_mov_ps(valid, exp_ps(_mm512_sub_ps(sc, _mm512_set1_ps(m_new))));
  const float alpha = m_old == -__builtin_inff()
                          ? 0.0f
                          : _mm_cvtss_f32(_mm512_castps512_ps128(exp_ps(_mm512_set1_ps(m_old - m_new))));
  *l = *l * alpha + _mm512_reduce_add_ps(pv);
  *m = m_new;
  _mm512_storeu_ps(p, pv);
  return alpha;
}

// acc = acc * alpha + sum_{j in [a, b]} p_j v_j, per element in key order.
static inline __attribute__((always_inline))
void accumulate(float* acc, float alpha, const float* p, int32_t a, int32_t b, int64_t dv,
                       const uint8_t* const* v_rows, bool f16) {
  const __m512 va = _mm512_set1_ps(alpha);
  int64_t x = 0;
  for (; x + 64 <= dv; x += 64) {    // four vectors of the output at a time
    __m512 r0 = _mm512_mul_ps(_mm512_loadu_ps(acc + x), va);
    __m512 r1 = _mm512_mul_ps(_mm512_loadu_ps(acc + x + 16), va);
    __m512 r2 = _mm512_mul_ps(_mm512_loadu_ps(acc + x + 32), va);
    __m512 r3 = _mm512_mul_ps(_mm512_loadu_ps(acc + x + 48), va);
    for (int32_t j = a; j <= b; ++j) {
      const __m512 w = _mm512_set1_ps(p[j]);
      r0 = _mm512_fmadd_ps(w, load_row16(v_rows[j], x, 0xffff, f16), r0);
      r1 = _mm512_fmadd_ps(w, load_row16(v_rows[j], x + 16, 0xffff, f16), r1);
      r2 = _mm512_fmadd_ps(w, load_row16(v_rows[j], x + 32, 0xffff, f16), r2);
      r3 = _mm512_fmadd_ps(w, load_row16(v_rows[j], x + 48, 0xffff, f16), r3);
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
      r = _mm512_fmadd_ps(_mm512_set1_ps(p[j]), load_row16(v_rows[j], x, mk, f16), r);
    }
    _mm512_mask_storeu_ps(acc + x, mk, r);
  }
}

// See AttnFns::attn_chunk (a loaded chunk).
static void attn_chunk(const float* q, const float* kt, const float* vb, int64_t d, int64_t dv,
                       float scale, int32_t a, int32_t b, float* m, float* l, float* acc) {
  float p[16];
  const float alpha = softmax_update(_mm512_mul_ps(scores_kt(q, kt, d), _mm512_set1_ps(scale)), a, b,
                                     m, l, p);
  const uint8_t* v_rows[16];
  for (int j = 0; j < 16; ++j) v_rows[j] = reinterpret_cast<const uint8_t*>(vb + j * dv);
  accumulate(acc, alpha, p, a, b, dv, v_rows, false);
}

// Scores of two queries from the transposed chunk, each bitwise as scores_kt: the
// lane-classes r and r + 8 of both share each loaded key row.
static void scores_kt_pair(const float* q0, const float* q1, const float* kt, int64_t d, __m512* s0,
                           __m512* s1) {
  __m512 y0[8], y1[8];
#pragma GCC unroll 8
  for (int r = 0; r < 8; ++r) {
    __m512 a0 = _mm512_setzero_ps(), b0 = _mm512_setzero_ps();
    __m512 a1 = _mm512_setzero_ps(), b1 = _mm512_setzero_ps();
    for (int64_t i = 0; i < d; i += 16) {
      const bool full = i + 16 <= d;   // zero-padded tail, as in scores_kt
      const float q0a = full || i + r < d ? q0[i + r] : 0.0f, q1a = full || i + r < d ? q1[i + r] : 0.0f;
      const float q0b = full || i + r + 8 < d ? q0[i + r + 8] : 0.0f;
      const float q1b = full || i + r + 8 < d ? q1[i + r + 8] : 0.0f;
      const __m512 ka = _mm512_loadu_ps(kt + (i + r) * 16), kb = _mm512_loadu_ps(kt + (i + r + 8) * 16);
      a0 = _mm512_fmadd_ps(_mm512_set1_ps(q0a), ka, a0);
      a1 = _mm512_fmadd_ps(_mm512_set1_ps(q1a), ka, a1);
      b0 = _mm512_fmadd_ps(_mm512_set1_ps(q0b), kb, b0);
      b1 = _mm512_fmadd_ps(_mm512_set1_ps(q1b), kb, b1);
    }
    y0[r] = _mm512_add_ps(a0, b0);
    y1[r] = _mm512_add_ps(a1, b1);
  }
  __m512 z0[4], z1[4];
#pragma GCC unroll 4
  for (int r = 0; r < 4; ++r) {
    z0[r] = _mm512_add_ps(y0[r], y0[r + 4]);
    z1[r] = _mm512_add_ps(y1[r], y1[r + 4]);
  }
  *s0 = _mm512_add_ps(_mm512_add_ps(z0[0], z0[2]), _mm512_add_ps(z0[1], z0[3]));
  *s1 = _mm512_add_ps(_mm512_add_ps(z1[0], z1[2]), _mm512_add_ps(z1[1], z1[3]));
}

// accumulate() for two queries over the same slots, sharing each loaded value row.
static void accumulate_pair(float* acc0, float* acc1, float alpha0, float alpha1, const float* p0,
                            const float* p1, int32_t a, int32_t b, int64_t dv, const float* vb) {
  const __m512 va0 = _mm512_set1_ps(alpha0), va1 = _mm512_set1_ps(alpha1);
  int64_t x = 0;
  for (; x + 64 <= dv; x += 64) {
    __m512 r0 = _mm512_mul_ps(_mm512_loadu_ps(acc0 + x), va0);
    __m512 r1 = _mm512_mul_ps(_mm512_loadu_ps(acc0 + x + 16), va0);
    __m512 r2 = _mm512_mul_ps(_mm512_loadu_ps(acc0 + x + 32), va0);
    __m512 r3 = _mm512_mul_ps(_mm512_loadu_ps(acc0 + x + 48), va0);
    __m512 t0 = _mm512_mul_ps(_mm512_loadu_ps(acc1 + x), va1);
    __m512 t1 = _mm512_mul_ps(_mm512_loadu_ps(acc1 + x + 16), va1);
    __m512 t2 = _mm512_mul_ps(_mm512_loadu_ps(acc1 + x + 32), va1);
    __m512 t3 = _mm512_mul_ps(_mm512_loadu_ps(acc1 + x + 48), va1);
    for (int32_t j = a; j <= b; ++j) {
      const __m512 w0 = _mm512_set1_ps(p0[j]), w1 = _mm512_set1_ps(p1[j]);
      const float* v = vb + j * dv + x;
      const __m512 v0 = _mm512_loadu_ps(v), v1 = _mm512_loadu_ps(v + 16);
      const __m512 v2 = _mm512_loadu_ps(v + 32), v3 = _mm512_loadu_ps(v + 48);
      r0 = _mm512_fmadd_ps(w0, v0, r0);
      r1 = _mm512_fmadd_ps(w0, v1, r1);
      r2 = _mm512_fmadd_ps(w0, v2, r2);
      r3 = _mm512_fmadd_ps(w0, v3, r3);
      t0 = _mm512_fmadd_ps(w1, v0, t0);
      t1 = _mm512_fmadd_ps(w1, v1, t1);
      t2 = _mm512_fmadd_ps(w1, v2, t2);
      t3 = _mm512_fmadd_ps(w1, v3, t3);
    }
    _mm512_storeu_ps(acc0 + x, r0);
    _mm512_storeu_ps(acc0 + x + 16, r1);
    _mm512_storeu_ps(acc0 + x + 32, r2);
    _mm512_storeu_ps(acc0 + x + 48, r3);
    _mm512_storeu_ps(acc1 + x, t0);
    _mm512_storeu_ps(acc1 + x + 16, t1);
    _mm512_storeu_ps(acc1 + x + 32, t2);
    _mm512_storeu_ps(acc1 + x + 48, t3);
  }
  if (x < dv) {                      // the rest one query at a time (same per-element order)
    const uint8_t* v_rows[16];
    for (int j = 0; j < 16; ++j) v_rows[j] = reinterpret_cast<const uint8_t*>(vb + j * dv + x);
    accumulate(acc0 + x, alpha0, p0, a, b, dv - x, v_rows, false);
    accumulate(acc1 + x, alpha1, p1, a, b, dv - x, v_rows, false);
  }
}

// See AttnFns::attn_chunk_pair.
static void attn_chunk_pair(const float* q0, const float* q1, const float* kt, const float* vb,
                            int64_t d, int64_t dv, float scale, int32_t a, int32_t b, float* m,
                            float* l, float* acc0, float* acc1) {
  __m512 s0, s1;
  scores_kt_pair(q0, q1, kt, d, &s0, &s1);
  const __m512 vs = _mm512_set1_ps(scale);
  float p0[16], p1[16];
  const float alpha0 = softmax_update(_mm512_mul_ps(s0, vs), a, b, m, l, p0);
  const float alpha1 = softmax_update(_mm512_mul_ps(s1, vs), a, b, m + 1, l + 1, p1);
  accumulate_pair(acc0, acc1, alpha0, alpha1, p0, p1, a, b, dv, vb);
}

// See AttnFns::attn_chunk_rows (the cache rows, for few queries a chunk).
static void attn_chunk_rows(const float* q, const uint8_t* const* k_rows, const uint8_t* const* v_rows,
                            bool f16, int64_t d, int64_t dv, float scale, int32_t a, int32_t b,
                            float* m, float* l, float* acc) {
  float p[16];
  const float alpha = softmax_update(_mm512_mul_ps(scores_rows(q, k_rows, d, f16), _mm512_set1_ps(scale)),
                                     a, b, m, l, p);
  accumulate(acc, alpha, p, a, b, dv, v_rows, f16);
}

// See AttnFns::attn_chunk_rows_multi. Per query the operations are scores_rows'
// (a[j] = FMAs over i in order from zero, then transpose_sum16), softmax_update's and
// accumulate's, in the same order; only the loop nesting differs (rows outer), so each
// query's bits are those of attn_chunk_rows.
static void attn_chunk_rows_multi(int32_t n, const float* const* q, const uint8_t* const* k_rows,
                                  const uint8_t* const* v_rows, bool f16, int64_t d, int64_t dv,
                                  float scale, int32_t a, int32_t b, float* m, float* l,
                                  float* const* acc) {
  constexpr int kMax = kAttnRowsMulti;
  __m512 s[kMax][16];
  for (int j = 0; j < 16; ++j) {
    __m512 t[kMax];
    for (int qi = 0; qi < kMax; ++qi) t[qi] = _mm512_setzero_ps();
    if (k_rows[j]) {                 // a null row leaves a[j] = +0, as scores_rows' FMAs with 0 do
      for (int64_t i = 0; i < d; i += 16) {
        const __mmask16 mk = d - i >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (d - i)) - 1u);
        const __m512 rv = load_row16(k_rows[j], i, mk, f16);
        for (int qi = 0; qi < n; ++qi) t[qi] = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(mk, q[qi] + i), rv, t[qi]);
      }
    }
    for (int qi = 0; qi < n; ++qi) s[qi][j] = t[qi];
  }
  float p[kMax][16];
  float alpha[kMax];
  for (int qi = 0; qi < n; ++qi) {
    alpha[qi] = softmax_update(_mm512_mul_ps(transpose_sum16(s[qi]), _mm512_set1_ps(scale)), a, b, m + qi,
                               l + qi, p[qi]);
  }
  int64_t x = 0;
  for (; x + 32 <= dv; x += 32) {    // two vectors of the output per query at a time
    __m512 r[kMax][2];
    for (int qi = 0; qi < n; ++qi) {
      const __m512 va = _mm512_set1_ps(alpha[qi]);
      r[qi][0] = _mm512_mul_ps(_mm512_loadu_ps(acc[qi] + x), va);
      r[qi][1] = _mm512_mul_ps(_mm512_loadu_ps(acc[qi] + x + 16), va);
    }
    for (int32_t j = a; j <= b; ++j) {
      const __m512 v0 = load_row16(v_rows[j], x, 0xffff, f16), v1 = load_row16(v_rows[j], x + 16, 0xffff, f16);
      for (int qi = 0; qi < n; ++qi) {
        const __m512 w = _mm512_set1_ps(p[qi][j]);
        r[qi][0] = _mm512_fmadd_ps(w, v0, r[qi][0]);
        r[qi][1] = _mm512_fmadd_ps(w, v1, r[qi][1]);
      }
    }
    for (int qi = 0; qi < n; ++qi) {
      _mm512_storeu_ps(acc[qi] + x, r[qi][0]);
      _mm512_storeu_ps(acc[qi] + x + 16, r[qi][1]);
    }
  }
  for (; x < dv; x += 16) {
    const __mmask16 mk = dv - x >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (dv - x)) - 1u);
    __m512 r[kMax];
    for (int qi = 0; qi < n; ++qi) r[qi] = _mm512_mul_ps(_mm512_maskz_loadu_ps(mk, acc[qi] + x), _mm512_set1_ps(alpha[qi]));
    for (int32_t j = a; j <= b; ++j) {
      const __m512 v = load_row16(v_rows[j], x, mk, f16);
      for (int qi = 0; qi < n; ++qi) r[qi] = _mm512_fmadd_ps(_mm512_set1_ps(p[qi][j]), v, r[qi]);
    }
    for (int qi = 0; qi < n; ++qi) _mm512_mask_storeu_ps(acc[qi] + x, mk, r[qi]);
  }
}

}  // namespace avx512

void fill_attn_avx512(AttnFns* t) {
  t->silu_mul = avx512::silu_mul;
  t->gelu_mul = avx512::gelu_mul;
  t->load_chunk = avx512::load_chunk;
  t->attn_chunk = avx512::attn_chunk;
  t->attn_chunk_rows = avx512::attn_chunk_rows;
  t->attn_chunk_rows_multi = avx512::attn_chunk_rows_multi;
  t->attn_chunk_pair = avx512::attn_chunk_pair;
}

}  // namespace ll
