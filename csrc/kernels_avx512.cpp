// kernels_avx512.cpp - AVX-512 kernels: kernels_simd.inc compiled with VNNI
// (vpdpbusd / vpdpwssd on 256-bit vectors, 32 vector registers for bigger
// tiles), and the AMX-INT8 tiles of the "amx" set (kernels_amx.inc). Built with
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
#include "quant_blocks.h"

namespace ll {
namespace avx512 {

#define LL_VNNI 1
#define LL_RM 4
#define LL_RN 4
#define LL_KRM 4
#define LL_KRN 2
#define LL_RN1 4
#define LL_KRN1 2
#define LL_XRM 8
#define LL_XKRM 4
#include "kernels_simd.inc"

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
