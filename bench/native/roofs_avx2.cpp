// roofs_avx2.cpp - the AVX2 roofs and decode floors. The core's AVX2 unit
// (csrc/kernels_avx2.cpp) is included whole, so this unit holds the module's only
// copy of it (CMakeLists.txt does not compile it separately) with the same flags,
// defines and register tiles; roofs_simd.inc then goes into the same namespace and
// uses the kernels' own primitives. Plain functions inside their own namespace
// only (ODR: see csrc/kernel_table.h).
#include "kernels_avx2.cpp"
#include "roofs.h"

namespace ll {
namespace avx2 {
#include "roofs_simd.inc"
}  // namespace avx2
}  // namespace ll

void llbench::fill_avx2_roofs(RoofTable* t) { ll::avx2::fill_roof_table(t); }
