// ops.h - the element-wise and attention operations of the forward pass.
//
// Each op works on rows of a row-major float32 buffer and comes in a "rows
// [r0, r1)" form so the caller can split work over the thread pool. The math is
// written like the formula; every op gives a row the same result whatever other
// rows are in the batch (batch invariance).
#pragma once
#include <cstdint>
#include <vector>

namespace ll {

// y[i] = x[i] / sqrt(mean(x^2) + eps) * w[i] for one row of d values (y may equal x).
void rmsnorm_row(const float* x, const float* w, float* y, int64_t d, float eps);

// RoPE on one vector of `d` values: rotates the first n_rot dims by the angles of
// `cs` (cos, sin interleaved: cs[2i], cs[2i+1] for pair i, n_rot/2 pairs).
// neox=false: pairs (2i, 2i+1) (llama.cpp "normal" mode); neox=true: (i, i + n_rot/2).
void rope_apply(float* x, const float* cs, int64_t n_rot, bool neox);

// cs[2i], cs[2i+1] = cos, sin of freq_scale * pos * base^(-2i/n_rot) / factors[i]
// for i < n_rot/2 (factors may be null: all 1).
void rope_angles(int32_t pos, float base, float freq_scale, const float* factors, int64_t n_rot,
                 float* cs);

// In place: x[i] = x[i] * sigmoid(x[i]) * up[i]   (SwiGLU), n values.
void silu_mul(float* x, const float* up, int64_t n);
// In place: x[i] = gelu_tanh(x[i]) * up[i]  (GeGLU with the tanh approximation).
void gelu_mul(float* x, const float* up, int64_t n);

// --- attention over the paged KV cache ---------------------------------------------
// One layer's K/V in the pool: k [n_blocks, block_size, n_head_kv, head_dim] and
// v [n_blocks, block_size, n_head_kv, head_dim_v], float16 bits or float32.
struct KVLayerView {
  const uint8_t* k = nullptr;
  const uint8_t* v = nullptr;
  int32_t block_size = 0, n_head_kv = 0, head_dim = 0, head_dim_v = 0;
  bool f16 = true;
};

// One layer's attention over a step: every token attends, for every head, to its
// sequence's positions [max(0, pos - window + 1) (window > 0), pos].
struct AttnStep {
  KVLayerView kv;
  int32_t n_tokens = 0, n_head = 0;
  const float* q = nullptr;              // [n_tokens, n_head, head_dim]
  float* out = nullptr;                  // [n_tokens, n_head, head_dim_v]
  const int32_t* positions = nullptr;    // [n_tokens]
  const int32_t* seq_ids = nullptr;      // [n_tokens]
  const int32_t* block_tables = nullptr; // [n_seqs, max_blocks]
  int32_t max_blocks = 0;
  int32_t window = 0;                    // 0: no sliding window
  float scale = 1.0f;                    // multiplies q.k
  float softcap = 0.0f;                  // > 0: scores become softcap * tanh(score / softcap)
};

// A unit of attention work: tokens [t0, t0 + n_t) (consecutive positions of one
// sequence) times query heads [h0, h0 + n_h), all reading K/V head kv_head, so
// each key and value row is loaded and converted once for all of them.
struct AttnTask {
  int32_t t0 = 0, n_t = 0, kv_head = 0, h0 = 0, n_h = 0;
};

// Splits a step into tasks: tiles of up to max_tile_tokens consecutive tokens of a
// sequence, times each kv head; a kv head's query heads are split further when
// that gives fewer than min_tasks tasks (decode of one sequence). How the work is
// split never changes a result.
std::vector<AttnTask> plan_attention(const AttnStep& s, int32_t max_tile_tokens, int32_t min_tasks);

// Computes s.out for the (token, head) pairs of one task.
void run_attention_task(const AttnStep& s, const AttnTask& task);

// Attention of n_q queries that read the same kv head of one sequence:
//   table [max_blocks] the sequence's block table; q[i] [head_dim], out[i] [head_dim_v];
//   query i attends to positions [p_lo[i], p_hi[i]] (p_lo <= p_hi).
// Online softmax over chunks of kAttnChunk absolute positions, in position order:
// a query's result is bitwise the same whatever other queries share the call.
// softcap > 0 caps each scaled score s to softcap * tanh(s / softcap) before the softmax
// (gemma2); that path always loads the chunk (AttnFns::attn_chunk_capped).
void attend_queries(const KVLayerView& kv, int32_t kv_head, const int32_t* table, int32_t n_q,
                    const float* const* q, const int32_t* p_lo, const int32_t* p_hi, float scale,
                    float* const* out, float softcap = 0.0f);

}  // namespace ll
