// kernels_avx2.cpp - AVX2 (+FMA, F16C) kernels: kernels_simd.inc compiled with
// maddubs/madd dot products, and the attention and activation ops of ops_simd.inc
// on 8-float vectors. Built with -mavx2 -mfma -mf16c -mbmi2 only; every function
// here has internal linkage inside ll::avx2 (see kernel_table.h, ODR).
#include <immintrin.h>

#include <cstddef>
#include <cstdint>

#include "kernel_table.h"
#include "kernels.h"
#include "ops_simd.h"
#include "quant_blocks.h"

namespace ll {
namespace avx2 {

#define LL_VNNI 0   // dot products with maddubs + madd
// The register tiles of this instruction set's kernels (kernels_simd.inc): activation
// rows x weight rows per tile. AVX2 has 16 vector registers, so its tiles are small.
struct IsaTraits {
  static constexpr int kRows32 = 4, kCols32 = 2;  // 32-value types (Q8_0 activations), M > 1
  static constexpr int kCols32M1 = 2;             // the same at M = 1: a 1 x kCols32M1 tile
  static constexpr int kRowsK = 2, kColsK = 2;    // K-quants, IQ4_XS and float weights, M > 1
  static constexpr int kColsKM1 = 2;              // the same at M = 1
  static constexpr int kRowsX8 = 4;               // x8 layout: activation rows per one-group tile
  static constexpr int kRowsX8K = 2;              // x8 layout, Q4_K and Q6_K
};
#include "kernels_simd.inc"
#include "ops_simd.inc"

}  // namespace avx2

void fill_avx2_kernels(KernelTable* t) {
  avx2::fill_attn_table(&t->attn);
  avx2::fill_simd_table(t);
}

}  // namespace ll
