// kernels_avx512.cpp - AVX-512 kernels: kernels_simd.inc compiled with VNNI
// (vpdpbusd / vpdpwssd on 256-bit vectors, 32 vector registers for bigger
// tiles), the attention and activation ops of ops_simd.inc on 16-float vectors,
// and the AMX-INT8 tiles of the "amx" set (kernels_amx.inc). Built with
// -mavx512f/bw/vl/dq/vnni (+ -mamx-tile -mamx-int8 where the compiler has them);
// every function here has internal linkage inside ll::avx512 (see
// kernel_table.h, ODR).
#include <immintrin.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <new>

#include "kernel_table.h"
#include "kernels.h"
#include "ops_simd.h"
#include "platform.h"
#include "quant_blocks.h"

namespace ll {
namespace avx512 {

#define LL_VNNI 1   // dot products with AVX-512 VNNI (vpdpbusd, vpdpwssd)
// The register tiles of this instruction set's kernels (kernels_simd.inc): activation
// rows x weight rows per tile. AVX-512 has 32 vector registers, so bigger tiles fit.
struct IsaTraits {
  static constexpr int kRows32 = 4, kCols32 = 4;  // 32-value types (Q8_0 activations), M > 1
  static constexpr int kCols32M1 = 4;             // the same at M = 1: a 1 x kCols32M1 tile
  static constexpr int kRowsK = 4, kColsK = 2;    // K-quants, IQ4_XS and float weights, M > 1
  static constexpr int kColsKM1 = 2;              // the same at M = 1
  static constexpr int kRowsX8 = 8;               // x8 layout: activation rows per one-group tile
  static constexpr int kRowsX8K = 4;              // x8 layout, Q4_K and Q6_K
};
#include "kernels_simd.inc"
#include "ops_simd.inc"

// AMX-INT8 tiles for the batched x8 matmuls, where the compiler can target them
// (CMake adds -mamx-tile -mamx-int8 to this unit when it accepts them).
#if defined(__AMX_TILE__) && defined(__AMX_INT8__)
#define LL_AMX_BUILT 1
#include "kernels_amx.inc"
#else
#define LL_AMX_BUILT 0
#endif

}  // namespace avx512

void fill_avx512_kernels(KernelTable* t) {
  avx512::fill_attn_table(&t->attn);
  avx512::fill_simd_table(t);
}

bool amx_kernels_built() { return LL_AMX_BUILT; }

void fill_amx_kernels(KernelTable* t) {
  fill_avx512_kernels(t);
#if LL_AMX_BUILT
  avx512::fill_amx_table(t);
#endif
}

}  // namespace ll
