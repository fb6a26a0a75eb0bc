// ops_simd.h - the float32 vector primitives of attention and the gated FFN, one implementation per
// instruction set (ops.cpp generic; ops_simd.inc compiled by kernels_avx2.cpp and
// kernels_avx512.cpp; kernels_arm.inc by the aarch64 units), reached through the `attn`
// member of the active ISA's KernelTable (kernel_table.h), whose fill functions fill it.
#pragma once
#include <cstdint>

namespace ll {

// Keys per attention chunk. Chunks start at absolute positions that are multiples
// of it, so a query's chunks (and its arithmetic) do not depend on what else is
// in the step.
constexpr int32_t kAttnChunk = 16;
// Most queries attn_chunk_rows_multi takes at once.
constexpr int32_t kAttnRowsMulti = 4;

struct AttnFns {
  // Loads one chunk of keys and values as float32, converting float16 once for every
  // query that reads the chunk:
  //   k_rows, v_rows [kAttnChunk]  the rows of the chunk's positions (head_dim / head_dim_v
  //                                values of the cache type), null for slots nobody reads
  //   kt  [d16, kAttnChunk] keys transposed: kt[i * kAttnChunk + j] = k_j[i] (0 for null
  //                         rows); d16 = d rounded up to 16 (rows past d are scratch)
  //   vb  [kAttnChunk, dv]  values row-major (null rows left as they are)
  void (*load_chunk)(const uint8_t* const* k_rows, const uint8_t* const* v_rows, int64_t d,
                     int64_t dv, bool f16, float* kt, float* vb);
  // One query over one loaded chunk, online softmax (flash-attention style):
  //   q       [d]; kt, vb as load_chunk left them
  //   a, b    the chunk slots this query attends to, 0 <= a <= b < kAttnChunk
  //   m, l    running max of the scaled scores (-inf before the first chunk) and
  //           running sum of exp(score - m)
  //   acc     [dv] running sum of exp(score - m) * v (zeros before the first chunk)
  // Each key's score and each output element is computed the same way whatever
  // the other slots hold (batch invariance).
  void (*attn_chunk)(const float* q, const float* kt, const float* vb, int64_t d, int64_t dv,
                     float scale, int32_t a, int32_t b, float* m, float* l, float* acc);
  // attn_chunk for two queries with the same slots [a, b] (two heads of one token),
  // each bitwise as attn_chunk alone; m, l [2], acc0 / acc1 [dv].
  void (*attn_chunk_pair)(const float* q0, const float* q1, const float* kt, const float* vb,
                          int64_t d, int64_t dv, float scale, int32_t a, int32_t b, float* m,
                          float* l, float* acc0, float* acc1);
  // The same as attn_chunk, bitwise, but reading the chunk straight from the cache rows
  // (load_chunk's arguments; null rows outside [a, b]): cheaper when few queries share a
  // chunk (decode). Null where the ISA has no such path.
  void (*attn_chunk_rows)(const float* q, const uint8_t* const* k_rows, const uint8_t* const* v_rows,
                          bool f16, int64_t d, int64_t dv, float scale, int32_t a, int32_t b,
                          float* m, float* l, float* acc);
  // attn_chunk_rows for n (2 to kAttnRowsMulti) queries reading the same slots [a, b] (the
  // heads of one token sharing a KV head), each bitwise as attn_chunk_rows alone, with every
  // cache row loaded and converted once for all of them: q, acc [n] pointers; m, l [n].
  // Null where the ISA has no such path.
  void (*attn_chunk_rows_multi)(int32_t n, const float* const* q, const uint8_t* const* k_rows,
                                const uint8_t* const* v_rows, bool f16, int64_t d, int64_t dv,
                                float scale, int32_t a, int32_t b, float* m, float* l,
                                float* const* acc);
  // attn_chunk with each scaled score s capped to cap * tanh(s / cap) before the softmax
  // (attention logit soft-capping, cap > 0).
  void (*attn_chunk_capped)(const float* q, const float* kt, const float* vb, int64_t d, int64_t dv,
                            float scale, float cap, int32_t a, int32_t b, float* m, float* l,
                            float* acc);
  // gated activations in place: x[i] = act(x[i]) * up[i] (act = silu or gelu_tanh)
  void (*silu_mul)(float* x, const float* up, int64_t n);
  void (*gelu_mul)(float* x, const float* up, int64_t n);
};

// The active instruction set's table (active_kernels().attn).
const AttnFns& attn_fns();

// The generic versions (ops.cpp), for fill_generic_kernels.
void fill_generic_attn(AttnFns* t);

}  // namespace ll
