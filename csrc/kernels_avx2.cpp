// kernels_avx2.cpp - AVX2 (+FMA, F16C) kernels. Compiled with -mavx2 -mfma
// -mf16c -mbmi2 only; plain functions inside ll::avx2, no shared inline code
// (see kernel_table.h).
#include "kernel_table.h"

namespace ll {

void fill_avx2_kernels(KernelTable* t) { (void)t; }

}  // namespace ll
