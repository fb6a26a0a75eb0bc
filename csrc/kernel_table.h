// kernel_table.h - the function-pointer table through which the core calls
// its per-ISA kernels: matmul, activation quantization and (AttnFns, ops_simd.h)
// the attention and activation ops.
//
// ODR rule for this project: the ISA-specific translation units (*_avx2.cpp,
// *_avx512.cpp, *_neon.cpp, *_dotprod.cpp, *_i8mm.cpp) are compiled with extra -m flags. If they instantiated an
// inline or template function that generic code also uses (STL templates,
// inline helpers from shared headers), the linker could keep the AVX-512 copy
// for everybody and generic code would fault on older CPUs. So ISA units hold
// only plain functions on pointers inside their own namespace, and export one
// table-filling function each; nothing here is inline.
#pragma once
#include <cstddef>
#include <cstdint>

#include "ops_simd.h"

namespace ll {

// Y[m * ldy + n] = dot(X[m], W[n]) for m in [0, M), n in [n0, n1).
// W: weight rows, w_row_bytes apart. X: quantized activation rows, x_row_bytes
// apart. nb: blocks per row (of the weight type). Each output must be computed
// the same way whatever M, n0, n1 are (batch invariance).
using MatmulFn = void (*)(const uint8_t* W, size_t w_row_bytes, const uint8_t* X,
                          size_t x_row_bytes, int64_t M, int64_t nb, float* Y, int64_t ldy,
                          int64_t n0, int64_t n1);

// Quantize one row of k floats to activation blocks (BlockQ8A or BlockQ8_K).
using QuantizeRowFn = void (*)(const float* x, void* dst, int64_t k);

constexpr int kMaxTypeId = 40;

struct KernelTable {
  MatmulFn matmul[kMaxTypeId] = {};  // indexed by weight type id; null = use generic
  // The same on weights in the x8 layout (kernels.h): W is the whole packed
  // tensor, w_row_bytes the bytes of one group of 8 rows, and n0, n1 are multiples
  // of the type's set (8 * x8_set_groups rows), except that n1 may be the tensor's
  // last row: a set counts as whole where all its groups lie below n1. Null:
  // matmul.cpp unpacks each group and runs matmul[type] on it.
  MatmulFn matmul_x8[kMaxTypeId] = {};
  AttnFns attn = {};  // attention and gated activations (ops_simd.h)
  QuantizeRowFn quantize_q8a = nullptr;
  QuantizeRowFn quantize_q8k = nullptr;
};

// Each fills the entries it implements; the caller starts from the generic table.
void fill_generic_kernels(KernelTable* t);
void fill_avx2_kernels(KernelTable* t);
void fill_avx512_kernels(KernelTable* t);
// avx512 plus the AMX-INT8 batched x8 matmuls (kernels_amx.inc); only call it
// when isa.cpp reports AMX usable. amx_kernels_built(): whether this build has
// them at all (the compiler accepted -mamx-int8).
void fill_amx_kernels(KernelTable* t);
bool amx_kernels_built();
// aarch64 (kernels_arm.inc compiled per set): Armv8.0 Advanced SIMD, + SDOT, + SMMLA.
void fill_neon_kernels(KernelTable* t);
void fill_dotprod_kernels(KernelTable* t);
void fill_i8mm_kernels(KernelTable* t);

// The table of the active ISA (set at import, changed by set_active_isa).
const KernelTable& active_kernels();
// The table of a given ISA (the int of kernels.h's ISA: 0 generic, 1 avx2, 2 avx512,
// 3 amx, 4 neon, 5 dotprod, 6 i8mm), for tests.
const KernelTable& kernels_for(int isa);

}  // namespace ll
