// kernels_neon.cpp - the aarch64 "neon" kernel set: kernels_arm.inc compiled for
// Armv8.0 Advanced SIMD: int8 products with SMULL + SADALP.
// Built with -march=armv8-a only (cmake/isa_flags.cmake); every function here has
// internal linkage inside ll::neon (see kernel_table.h, ODR). isa.cpp calls
// fill_neon_kernels only where the CPU reports the features.
#include <arm_neon.h>

#include <cstddef>
#include <cstdint>

#include "kernel_table.h"
#include "kernels.h"
#include "quant_blocks.h"

namespace ll {
namespace neon {

#define LL_ARM_DOT 0
#define LL_ARM_MMLA 0
#include "kernels_arm.inc"

}  // namespace neon

void fill_neon_kernels(KernelTable* t) { neon::fill_arm_table(t); }

}  // namespace ll
