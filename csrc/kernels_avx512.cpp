// kernels_avx512.cpp - AVX-512 kernels: kernels_simd.inc compiled with VNNI
// (vpdpbusd / vpdpwssd on 256-bit vectors, 32 vector registers for bigger
// tiles). Built with -mavx512f/bw/vl/dq/vnni; every function here has internal
// linkage inside ll::avx512 (see kernel_table.h, ODR).
#include <immintrin.h>

#include <cstddef>
#include <cstdint>

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

}  // namespace avx512

void fill_avx512_kernels(KernelTable* t) {
  avx512::fill_simd_table(t);
  avx512::fill_bench_table(t);
}

}  // namespace ll
