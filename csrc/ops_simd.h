// ops_simd.h - the float32 vector primitives of attention and the gated FFN, one implementation per
// instruction set (ops.cpp generic, ops_avx2.cpp, ops_avx512.cpp), picked by the
// core's active ISA. Same ODR rule as kernel_table.h: the ISA units hold plain
// functions only and export one table-filling function each.
#pragma once
#include <cstdint>

namespace ll {

// Keys per attention chunk. Chunks start at absolute positions that are multiples
// of it, so a query's chunks (and its arithmetic) do not depend on what else is
// in the step.
constexpr int32_t kAttnChunk = 16;

struct AttnFns {
  // dst[i] = float(src[i]) for float16 bits (exact)
  void (*f16_to_f32)(float* dst, const uint16_t* src, int64_t n);
  // One query over one key chunk, online softmax (flash-attention style):
  //   q       [d]
  //   k_rows  [kAttnChunk] pointers to key rows [d]; every one readable (rows
  //           outside [a, b] may be zeros; they are ignored)
  //   v_rows  [kAttnChunk] pointers to value rows [dv]; only [a, b] are read
  //   a, b    the chunk slots this query attends to, 0 <= a <= b < kAttnChunk
  //   m, l    running max of the scaled scores (-inf before the first chunk) and
  //           running sum of exp(score - m)
  //   acc     [dv] running sum of exp(score - m) * v (zeros before the first chunk)
  // Each key's score and each output element is computed the same way whatever
  // the other slots hold (batch invariance).
  void (*attn_chunk)(const float* q, const float* const* k_rows, const float* const* v_rows,
                     int64_t d, int64_t dv, float scale, int32_t a, int32_t b, float* m, float* l,
                     float* acc);
  // gated activations in place: x[i] = act(x[i]) * up[i] (act = silu or gelu_tanh)
  void (*silu_mul)(float* x, const float* up, int64_t n);
  void (*gelu_mul)(float* x, const float* up, int64_t n);
};

// The table of the active instruction set.
const AttnFns& attn_fns();

void fill_attn_avx2(AttnFns* t);
void fill_attn_avx512(AttnFns* t);

}  // namespace ll
