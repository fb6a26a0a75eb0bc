// quant_blocks.h - the ggml block layouts as packed structs (bit-compatible with
// GGUF files), plus the core's own 8-bit activation block.
//
// Plain data only: no inline functions here, so the ISA-specific translation
// units (*_avx2.cpp, *_avx512.cpp) can include this header without sharing any
// code with the generic build (see kernel_table.h about ODR).
#pragma once
#include <cstdint>

namespace ll {

constexpr int QK32 = 32;   // values per block of the 32-value types
constexpr int QK_K = 256;  // values per super-block of the K-quants
constexpr int K_SCALE_SIZE = 12;

#pragma pack(push, 1)
struct BlockQ4_0 { uint16_t d; uint8_t qs[QK32 / 2]; };
struct BlockQ4_1 { uint16_t d; uint16_t m; uint8_t qs[QK32 / 2]; };
struct BlockQ5_0 { uint16_t d; uint8_t qh[4]; uint8_t qs[QK32 / 2]; };
struct BlockQ5_1 { uint16_t d; uint16_t m; uint8_t qh[4]; uint8_t qs[QK32 / 2]; };
struct BlockQ8_0 { uint16_t d; int8_t qs[QK32]; };
struct BlockQ8_1 { uint16_t d; uint16_t s; int8_t qs[QK32]; };
struct BlockIQ4_NL { uint16_t d; uint8_t qs[QK32 / 2]; };

// d (fp16) scales the 4-bit sub-block scales, dmin the 4-bit sub-block mins.
struct BlockQ2_K { uint8_t scales[QK_K / 16]; uint8_t qs[QK_K / 4]; uint16_t d; uint16_t dmin; };
struct BlockQ3_K { uint8_t hmask[QK_K / 8]; uint8_t qs[QK_K / 4]; uint8_t scales[12]; uint16_t d; };
struct BlockQ4_K { uint16_t d; uint16_t dmin; uint8_t scales[K_SCALE_SIZE]; uint8_t qs[QK_K / 2]; };
struct BlockQ5_K {
  uint16_t d; uint16_t dmin; uint8_t scales[K_SCALE_SIZE]; uint8_t qh[QK_K / 8]; uint8_t qs[QK_K / 2];
};
struct BlockQ6_K { uint8_t ql[QK_K / 2]; uint8_t qh[QK_K / 4]; int8_t scales[QK_K / 16]; uint16_t d; };
// Q8_K: the activation type paired with the K-quants and IQ4_XS.
// bsums[j] = sum of qs[16j .. 16j+15].
struct BlockQ8_K { float d; int8_t qs[QK_K]; int16_t bsums[QK_K / 16]; };
struct BlockIQ4_XS { uint16_t d; uint16_t scales_h; uint8_t scales_l[QK_K / 64]; uint8_t qs[QK_K / 2]; };

// The core's activation block for the 32-value weight types ("Q8_0-style"): a
// float32 scale instead of Q8_0's fp16 one (no rounding of the scale), and the
// integer sum of qs, which the types with an offset or a minimum need.
// x[i] ~= d * qs[i].
struct BlockQ8A {
  float d;
  int16_t sum;      // sum of qs[0..31]
  int16_t unused;
  int8_t qs[QK32];
};
#pragma pack(pop)

static_assert(sizeof(BlockQ4_0) == 18, "Q4_0 block size");
static_assert(sizeof(BlockQ4_1) == 20, "Q4_1 block size");
static_assert(sizeof(BlockQ5_0) == 22, "Q5_0 block size");
static_assert(sizeof(BlockQ5_1) == 24, "Q5_1 block size");
static_assert(sizeof(BlockQ8_0) == 34, "Q8_0 block size");
static_assert(sizeof(BlockQ8_1) == 36, "Q8_1 block size");
static_assert(sizeof(BlockIQ4_NL) == 18, "IQ4_NL block size");
static_assert(sizeof(BlockQ2_K) == 84, "Q2_K block size");
static_assert(sizeof(BlockQ3_K) == 110, "Q3_K block size");
static_assert(sizeof(BlockQ4_K) == 144, "Q4_K block size");
static_assert(sizeof(BlockQ5_K) == 176, "Q5_K block size");
static_assert(sizeof(BlockQ6_K) == 210, "Q6_K block size");
static_assert(sizeof(BlockQ8_K) == 292, "Q8_K block size");
static_assert(sizeof(BlockIQ4_XS) == 136, "IQ4_XS block size");
static_assert(sizeof(BlockQ8A) == 40, "activation block size");

// The 16 signed levels of IQ4_NL / IQ4_XS.
extern const int8_t kIQ4NLValues[16];

// fp16 bit pattern -> float32 for all 65,536 patterns, exact; filled at load
// time (types.cpp). Kernels broadcast scales straight from it.
extern float g_fp16_to_fp32[65536];

}  // namespace ll
