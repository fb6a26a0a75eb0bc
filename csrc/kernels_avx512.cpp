// kernels_avx512.cpp - AVX-512 (F/BW/VL/DQ + VNNI) kernels. Plain functions
// inside ll::avx512, no shared inline code (see kernel_table.h).
#include "kernel_table.h"

namespace ll {

void fill_avx512_kernels(KernelTable* t) { (void)t; }

}  // namespace ll
