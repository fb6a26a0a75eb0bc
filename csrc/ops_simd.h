// ops_simd.h - the float32 vector primitives of attention and the gated FFN, one implementation per
// instruction set (ops.cpp generic, ops_avx2.cpp, ops_avx512.cpp), picked by the
// core's active ISA. Same ODR rule as kernel_table.h: the ISA units hold plain
// functions only and export one table-filling function each.
#pragma once
#include <cstdint>

namespace ll {

struct AttnFns {
  // sum_i a[i] * b[i]
  float (*dot)(const float* a, const float* b, int64_t n);
  // y[i] += a * x[i]
  void (*axpy)(float* y, float a, const float* x, int64_t n);
  // the same with b / x stored as float16 bits (the f16 KV cache)
  float (*dot_f16)(const float* a, const uint16_t* b, int64_t n);
  void (*axpy_f16)(float* y, float a, const uint16_t* x, int64_t n);
  // gated activations in place: x[i] = act(x[i]) * up[i] (act = silu or gelu_tanh)
  void (*silu_mul)(float* x, const float* up, int64_t n);
  void (*gelu_mul)(float* x, const float* up, int64_t n);
};

// The table of the active instruction set.
const AttnFns& attn_fns();

void fill_attn_avx2(AttnFns* t);
void fill_attn_avx512(AttnFns* t);

}  // namespace ll
