// ops.cpp - scalar element-wise and attention operations (see ops.h).
#include "ops.h"

#include <algorithm>
#include <cmath>

#include "kernels.h"
#include "ops_simd.h"
#include "scalar_util.h"

#if defined(__x86_64__) || defined(_M_X64) || defined(__i386__)
#define LL_OPS_X86 1
#endif

namespace ll {

// --- vector primitives: generic versions and the per-ISA table ---------------------
namespace {

void f16_to_f32_generic(float* dst, const uint16_t* src, int64_t n) {
  for (int64_t i = 0; i < n; ++i) dst[i] = fp16_to_fp32(src[i]);
}

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

// See AttnFns::attn_chunk. Only slots [a, b] are touched.
void attn_chunk_generic(const float* q, const float* const* k_rows, const float* const* v_rows,
                        int64_t d, int64_t dv, float scale, int32_t a, int32_t b, float* m,
                        float* l, float* acc) {
  float p[kAttnChunk];                                  // scores, then exp(score - m_new)
  float m_chunk = -INFINITY;
  for (int32_t j = a; j <= b; ++j) {
    p[j] = dot_generic(q, k_rows[j], d) * scale;
    m_chunk = std::max(m_chunk, p[j]);
  }
  const float m_new = std::max(*m, m_chunk);
  const float alpha = *m == -INFINITY ? 0.0f : std::exp(*m - m_new);
  float sum = 0.0f;
  for (int32_t j = a; j <= b; ++j) {
    p[j] = std::exp(p[j] - m_new);
    sum += p[j];
  }
  *l = *l * alpha + sum;
  *m = m_new;
  for (int64_t i = 0; i < dv; ++i) {                    // acc = acc * alpha + sum_j p_j v_j
    float r = acc[i] * alpha;
    for (int32_t j = a; j <= b; ++j) r += p[j] * v_rows[j][i];
    acc[i] = r;
  }
}

struct AttnTables {
  AttnFns t[3];
  AttnTables() {
    for (AttnFns& f : t) f = AttnFns{f16_to_f32_generic, attn_chunk_generic, silu_mul, gelu_mul};
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
void attend_queries(const KVLayerView& kv, int32_t kv_head, const int32_t* table, int32_t n_q,
                    const float* const* q, const int32_t* p_lo, const int32_t* p_hi, float scale,
                    float* const* out) {
  if (n_q <= 0) return;
  const AttnFns& f = attn_fns();
  const int32_t bs = kv.block_size, d = kv.head_dim, dv = kv.head_dim_v;
  const size_t es = kv.f16 ? 2 : 4;
  const size_t k_pos = (size_t)kv.n_head_kv * d * es, v_pos = (size_t)kv.n_head_kv * dv * es;
  thread_local std::vector<float> kbuf, vbuf, zeros;    // [kAttnChunk, d], [kAttnChunk, dv], [max(d, dv)]
  thread_local std::vector<float> m, l;                 // [n_q] running max and sum
  if ((int64_t)kbuf.size() < (int64_t)kAttnChunk * d) kbuf.resize((size_t)kAttnChunk * d);
  if ((int64_t)vbuf.size() < (int64_t)kAttnChunk * dv) vbuf.resize((size_t)kAttnChunk * dv);
  if ((int64_t)zeros.size() < std::max(d, dv)) zeros.assign(std::max(d, dv), 0.0f);
  if ((int32_t)m.size() < n_q) {
    m.resize(n_q);
    l.resize(n_q);
  }
  int32_t lo = p_lo[0], hi = p_hi[0];
  for (int32_t i = 0; i < n_q; ++i) {
    lo = std::min(lo, p_lo[i]);
    hi = std::max(hi, p_hi[i]);
    m[i] = -INFINITY;
    l[i] = 0.0f;
    std::fill(out[i], out[i] + dv, 0.0f);
  }
  const float* k_rows[kAttnChunk];
  const float* v_rows[kAttnChunk];
  for (int32_t c0 = lo - lo % kAttnChunk; c0 <= hi; c0 += kAttnChunk) {
    // rows of the chunk that some query reads: loaded (converted) once for all
    const int32_t s_lo = std::max(lo, c0) - c0, s_hi = std::min(hi, c0 + kAttnChunk - 1) - c0;
    for (int32_t j = 0; j < kAttnChunk; ++j) {
      if (j < s_lo || j > s_hi) {
        k_rows[j] = v_rows[j] = zeros.data();
        continue;
      }
      const int32_t pos = c0 + j;
      const size_t slot = (size_t)table[pos / bs] * bs + pos % bs;
      const uint8_t* k = kv.k + slot * k_pos + (size_t)kv_head * d * es;
      const uint8_t* v = kv.v + slot * v_pos + (size_t)kv_head * dv * es;
      if (kv.f16) {
        f.f16_to_f32(kbuf.data() + (size_t)j * d, reinterpret_cast<const uint16_t*>(k), d);
        f.f16_to_f32(vbuf.data() + (size_t)j * dv, reinterpret_cast<const uint16_t*>(v), dv);
        k_rows[j] = kbuf.data() + (size_t)j * d;
        v_rows[j] = vbuf.data() + (size_t)j * dv;
      } else {
        k_rows[j] = reinterpret_cast<const float*>(k);
        v_rows[j] = reinterpret_cast<const float*>(v);
      }
    }
    for (int32_t i = 0; i < n_q; ++i) {
      const int32_t a = std::max(p_lo[i], c0) - c0, b = std::min(p_hi[i], c0 + kAttnChunk - 1) - c0;
      if (a > b) continue;                                // the query reads nothing here
      f.attn_chunk(q[i], k_rows, v_rows, d, dv, scale, a, b, &m[i], &l[i], out[i]);
    }
  }
  for (int32_t i = 0; i < n_q; ++i) {                  // one rounding: divide, not * (1 / l)
    for (int32_t x = 0; x < dv; ++x) out[i][x] /= l[i];
  }
}

std::vector<AttnTask> plan_attention(const AttnStep& s, int32_t max_tile_tokens, int32_t min_tasks) {
  std::vector<AttnTask> tiles;                          // kv_head, h0, n_h filled below
  for (int32_t t = 0; t < s.n_tokens;) {
    int32_t n = 1;
    while (t + n < s.n_tokens && n < max_tile_tokens && s.seq_ids[t + n] == s.seq_ids[t] &&
           s.positions[t + n] == s.positions[t + n - 1] + 1) {
      ++n;
    }
    tiles.push_back(AttnTask{t, n, 0, 0, 0});
    t += n;
  }
  const int32_t n_kv = s.kv.n_head_kv, group = s.n_head / n_kv;
  const int64_t base = (int64_t)tiles.size() * n_kv;
  const int32_t n_split = (int32_t)std::min<int64_t>(group, std::max<int64_t>(1, (min_tasks + base - 1) / base));
  std::vector<AttnTask> tasks;
  tasks.reserve(base * n_split);
  for (const AttnTask& tile : tiles) {
    for (int32_t g = 0; g < n_kv; ++g) {
      for (int32_t k = 0; k < n_split; ++k) {
        const int32_t h0 = group * k / n_split, h1 = group * (k + 1) / n_split;
        if (h0 < h1) tasks.push_back(AttnTask{tile.t0, tile.n_t, g, g * group + h0, h1 - h0});
      }
    }
  }
  return tasks;
}

void run_attention_task(const AttnStep& s, const AttnTask& task) {
  const int32_t d = s.kv.head_dim, dv = s.kv.head_dim_v;
  const int32_t n_q = task.n_t * task.n_h;
  thread_local std::vector<const float*> q;
  thread_local std::vector<float*> out;
  thread_local std::vector<int32_t> p_lo, p_hi;
  q.resize(n_q);
  out.resize(n_q);
  p_lo.resize(n_q);
  p_hi.resize(n_q);
  for (int32_t i = 0; i < task.n_t; ++i) {
    const int64_t t = task.t0 + i;
    const int32_t pos = s.positions[t];
    for (int32_t h = 0; h < task.n_h; ++h) {
      const int32_t j = i * task.n_h + h;
      q[j] = s.q + (t * s.n_head + task.h0 + h) * d;
      out[j] = s.out + (t * s.n_head + task.h0 + h) * dv;
      p_lo[j] = s.window > 0 ? std::max(0, pos - s.window + 1) : 0;
      p_hi[j] = pos;
    }
  }
  const int32_t* table = s.block_tables + (int64_t)s.seq_ids[task.t0] * s.max_blocks;
  attend_queries(s.kv, task.kv_head, table, n_q, q.data(), p_lo.data(), p_hi.data(), s.scale,
                 out.data());
}

}  // namespace ll
