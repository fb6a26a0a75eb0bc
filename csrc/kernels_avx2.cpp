// kernels_avx2.cpp - AVX2 (+FMA, F16C) kernels: kernels_simd.inc compiled with
// maddubs/madd dot products. Built with -mavx2 -mfma -mf16c -mbmi2 only; every
// function here has internal linkage inside ll::avx2 (see kernel_table.h, ODR).
#include <immintrin.h>

#include <cstddef>
#include <cstdint>

#include "kernel_table.h"
#include "kernels.h"
#include "quant_blocks.h"

namespace ll {
namespace avx2 {

#define LL_VNNI 0
#define LL_RM 4
#define LL_RN 2
#define LL_KRM 2
#define LL_KRN 2
#define LL_RN1 2
#define LL_KRN1 2
#define LL_XRM 4
#define LL_XKRM 2
#include "kernels_simd.inc"

}  // namespace avx2

void fill_avx2_kernels(KernelTable* t) {
  avx2::fill_simd_table(t);
}

}  // namespace ll
