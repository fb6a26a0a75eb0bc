// kernels_dotprod.cpp - the aarch64 "dotprod" kernel set: kernels_arm.inc compiled for
// Armv8.2 dot product (SDOT).
// Built with -march=armv8.2-a+dotprod only (cmake/isa_flags.cmake); every function here has
// internal linkage inside ll::dotprod (see kernel_table.h, ODR). isa.cpp calls
// fill_dotprod_kernels only where the CPU reports the features.
#include <arm_neon.h>

#include <cstddef>
#include <cstdint>

#include "kernel_table.h"
#include "kernels.h"
#include "quant_blocks.h"

namespace ll {
namespace dotprod {

#define LL_ARM_DOT 1
#define LL_ARM_MMLA 0
#include "kernels_arm.inc"

}  // namespace dotprod

void fill_dotprod_kernels(KernelTable* t) { dotprod::fill_arm_table(t); }

}  // namespace ll
