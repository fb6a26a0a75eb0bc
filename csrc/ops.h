// ops.h - the element-wise and attention operations of the forward pass.
//
// Each op works on rows of a row-major float32 buffer and comes in a "rows
// [r0, r1)" form so the caller can split work over the thread pool. The math is
// written like the formula; every op gives a row the same result whatever other
// rows are in the batch (batch invariance).
#pragma once
#include <cstdint>

namespace ll {

struct KVCache;

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

// In place softmax of n values.
void softmax(float* x, int64_t n);

// Attention of one query head over its sequence's cached keys.
//   q       [head_dim]             the query (already normed/roped)
//   layer, kv_head: which cached K/V to read
//   table   [max_blocks]           the sequence's block table
//   p0..p1  inclusive position range to attend to
//   scores  [p1 - p0 + 1]          scratch
//   out     [head_dim_v]
void attend_one(const KVCache& kv, int32_t layer, int32_t kv_head, const float* q,
                const int32_t* table, int32_t p0, int32_t p1, float scale,
                float* scores, float* out);

}  // namespace ll
