// kernels_i8mm.cpp - the aarch64 "i8mm" kernel set: kernels_arm.inc compiled for
// SDOT plus the int8 matrix multiply (SMMLA) on 2 x 2 tiles of batched matmuls.
// Built with -march=armv8.2-a+dotprod+i8mm only (cmake/isa_flags.cmake); every function here has
// internal linkage inside ll::i8mm (see kernel_table.h, ODR). isa.cpp calls
// fill_i8mm_kernels only where the CPU reports the features.
#include <arm_neon.h>

#include <cstddef>
#include <cstdint>

#include "kernel_table.h"
#include "kernels.h"
#include "quant_blocks.h"

namespace ll {
namespace i8mm {

#define LL_ARM_DOT 1
#define LL_ARM_MMLA 1
#include "kernels_arm.inc"

}  // namespace i8mm

void fill_i8mm_kernels(KernelTable* t) { i8mm::fill_arm_table(t); }

}  // namespace ll
