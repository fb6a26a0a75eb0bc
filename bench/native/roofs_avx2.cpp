// roofs_avx2.cpp - the AVX2 roofs and decode floors: roofs_simd.inc on top of the
// core's kernels_simd.inc, with the flags and defines of csrc/kernels_avx2.cpp.
// Plain functions inside their own namespace only (ODR: see csrc/kernel_table.h).
#include <immintrin.h>

#include <cstddef>
#include <cstdint>

#include "kernel_table.h"
#include "kernels.h"
#include "quant_blocks.h"
#include "roofs.h"

namespace ll {
namespace bench_avx2 {

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
#include "roofs_simd.inc"

}  // namespace bench_avx2
}  // namespace ll

void llbench::fill_avx2_roofs(RoofTable* t) { ll::bench_avx2::fill_roof_table(t); }
