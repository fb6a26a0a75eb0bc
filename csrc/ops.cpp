// ops.cpp - scalar element-wise and attention operations (see ops.h).
#include "ops.h"

#include <algorithm>
#include <cmath>

#include "kernel_table.h"
#include "kernels.h"
#include "ops_simd.h"
#include "scalar_util.h"

namespace ll {

// --- vector primitives: the generic versions ----------------------------------------
namespace {

float load_value(const uint8_t* row, int64_t i, bool f16) {
  return f16 ? fp16_to_fp32(reinterpret_cast<const uint16_t*>(row)[i])
             : reinterpret_cast<const float*>(row)[i];
}

void load_chunk_generic(const uint8_t* const* k_rows, const uint8_t* const* v_rows, int64_t d,
                        int64_t dv, bool f16, float* kt, float* vb) {
  for (int32_t j = 0; j < kAttnChunk; ++j) {
    for (int64_t i = 0; i < d; ++i) kt[i * kAttnChunk + j] = k_rows[j] ? load_value(k_rows[j], i, f16) : 0.0f;
    if (v_rows[j]) {
      for (int64_t i = 0; i < dv; ++i) vb[j * dv + i] = load_value(v_rows[j], i, f16);
    }
  }
}

// See AttnFns::attn_chunk. Four partial sums over the head dimension per key.
void attn_chunk_generic(const float* q, const float* kt, const float* vb, int64_t d, int64_t dv,
                        float scale, int32_t a, int32_t b, float* m, float* l, float* acc) {
  float p[kAttnChunk];                                  // scores, then exp(score - m_new)
  float m_chunk = -INFINITY;
  for (int32_t j = a; j <= b; ++j) {
    float part[4] = {0.0f, 0.0f, 0.0f, 0.0f};
    for (int64_t i = 0; i < d; ++i) part[i % 4] += q[i] * kt[i * kAttnChunk + j];
    p[j] = ((part[0] + part[1]) + (part[2] + part[3])) * scale;
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
    for (int32_t j = a; j <= b; ++j) r += p[j] * vb[j * dv + i];
    acc[i] = r;
  }
}

// See AttnFns::attn_chunk_capped: attn_chunk_generic's scores, each capped.
void attn_chunk_capped_generic(const float* q, const float* kt, const float* vb, int64_t d, int64_t dv,
                               float scale, float cap, int32_t a, int32_t b, float* m, float* l,
                               float* acc) {
  float p[kAttnChunk];
  float m_chunk = -INFINITY;
  for (int32_t j = a; j <= b; ++j) {
    float part[4] = {0.0f, 0.0f, 0.0f, 0.0f};
    for (int64_t i = 0; i < d; ++i) part[i % 4] += q[i] * kt[i * kAttnChunk + j];
    p[j] = cap * std::tanh(((part[0] + part[1]) + (part[2] + part[3])) * scale / cap);
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
  for (int64_t i = 0; i < dv; ++i) {
    float r = acc[i] * alpha;
    for (int32_t j = a; j <= b; ++j) r += p[j] * vb[j * dv + i];
    acc[i] = r;
  }
}

}  // namespace

void fill_generic_attn(AttnFns* t) {
  *t = AttnFns{};
  t->load_chunk = load_chunk_generic;
  t->attn_chunk = attn_chunk_generic;   // attn_chunk_pair, attn_chunk_rows: SIMD only
  t->attn_chunk_capped = attn_chunk_capped_generic;
  t->silu_mul = silu_mul;
  t->gelu_mul = gelu_mul;
}

const AttnFns& attn_fns() { return active_kernels().attn; }

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
// Queries per call up to which attend_queries reads K/V rows straight from the cache
// (where the ISA has that path) instead of converting each chunk once.
constexpr int32_t kRowsPathMaxQueries = 4;

void attend_queries(const KVLayerView& kv, int32_t kv_head, const int32_t* table, int32_t n_q,
                    const float* const* q, const int32_t* p_lo, const int32_t* p_hi, float scale,
                    float* const* out, float softcap) {
  if (n_q <= 0) return;
  const AttnFns& f = attn_fns();
  const int32_t bs = kv.block_size, d = kv.head_dim, dv = kv.head_dim_v;
  const size_t es = kv.f16 ? 2 : 4;
  const size_t k_pos = (size_t)kv.n_head_kv * d * es, v_pos = (size_t)kv.n_head_kv * dv * es;
  thread_local std::vector<float> kt, vb;               // [d16, kAttnChunk], [kAttnChunk, dv]
  thread_local std::vector<float> m, l;                 // [n_q] running max and sum
  const int64_t d16 = (d + 15) / 16 * 16;
  if ((int64_t)kt.size() < kAttnChunk * d16) kt.resize((size_t)(kAttnChunk * d16));
  if ((int64_t)vb.size() < (int64_t)kAttnChunk * dv) vb.resize((size_t)kAttnChunk * dv);
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
  const uint8_t* k_rows[kAttnChunk];
  const uint8_t* v_rows[kAttnChunk];
  // Few queries: converting the chunk once costs more than reading the rows per query.
  const bool capped = softcap > 0.0f;
  const bool from_rows = !capped && f.attn_chunk_rows != nullptr && n_q <= kRowsPathMaxQueries;
  // ... and when they are the heads of one token (same positions), one pass over the rows
  // serves all of them (each bitwise as alone).
  bool same_span = true;
  for (int32_t i = 1; i < n_q; ++i) same_span = same_span && p_lo[i] == p_lo[0] && p_hi[i] == p_hi[0];
  const bool rows_multi = from_rows && same_span && n_q >= 2 && n_q <= kAttnRowsMulti &&
                          f.attn_chunk_rows_multi != nullptr;
  for (int32_t c0 = lo - lo % kAttnChunk; c0 <= hi; c0 += kAttnChunk) {
    // rows of the chunk that some query reads: loaded (converted) once for all
    const int32_t s_lo = std::max(lo, c0) - c0, s_hi = std::min(hi, c0 + kAttnChunk - 1) - c0;
    int32_t blk = (c0 + s_lo) / bs, slot = (c0 + s_lo) % bs;
    for (int32_t j = 0; j < kAttnChunk; ++j) {
      if (j < s_lo || j > s_hi) {
        k_rows[j] = v_rows[j] = nullptr;
        continue;
      }
      const size_t row = (size_t)table[blk] * bs + slot;
      k_rows[j] = kv.k + row * k_pos + (size_t)kv_head * d * es;
      v_rows[j] = kv.v + row * v_pos + (size_t)kv_head * dv * es;
      if (++slot == bs) {
        slot = 0;
        ++blk;
      }
    }
    if (!from_rows) f.load_chunk(k_rows, v_rows, d, dv, kv.f16, kt.data(), vb.data());
    if (rows_multi) {
      const int32_t a = std::max(p_lo[0], c0) - c0, b = std::min(p_hi[0], c0 + kAttnChunk - 1) - c0;
      if (a <= b) f.attn_chunk_rows_multi(n_q, q, k_rows, v_rows, kv.f16, d, dv, scale, a, b, m.data(), l.data(), out);
      continue;
    }
    for (int32_t i = 0; i < n_q; ++i) {
      const int32_t a = std::max(p_lo[i], c0) - c0, b = std::min(p_hi[i], c0 + kAttnChunk - 1) - c0;
      if (a > b) continue;                                // the query reads nothing here
      if (capped) {
        f.attn_chunk_capped(q[i], kt.data(), vb.data(), d, dv, scale, softcap, a, b, &m[i], &l[i], out[i]);
      } else if (from_rows) {
        f.attn_chunk_rows(q[i], k_rows, v_rows, kv.f16, d, dv, scale, a, b, &m[i], &l[i], out[i]);
      } else if (f.attn_chunk_pair && i + 1 < n_q && p_lo[i + 1] == p_lo[i] && p_hi[i + 1] == p_hi[i]) {
        f.attn_chunk_pair(q[i], q[i + 1], kt.data(), vb.data(), d, dv, scale, a, b, &m[i], &l[i],
                          out[i], out[i + 1]);
        ++i;                                              // two heads of one token
      } else {
        f.attn_chunk(q[i], kt.data(), vb.data(), d, dv, scale, a, b, &m[i], &l[i], out[i]);
      }
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
                 out.data(), s.softcap);
}

}  // namespace ll
