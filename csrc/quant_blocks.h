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

// The x8 layout (repack.cpp): the 32-value types with 8 weight rows interleaved
// per block column, made at load time so one int32 SIMD lane holds one weight
// row's whole block dot product (no horizontal sums; one scale FMA per 8 rows).
// Block b of row group g holds rows 8g..8g+7, block b of each:
//   d[j], m[j]  row j's fp16 scale (and minimum), as in the ggml block;
//   qs          (qs bytes of one row / 4) vectors of 32 bytes: byte 4j+i of vector t
//               is row j's qs[4t+i] (4-bit types: the low nibbles of vector t are
//               values 4t..4t+3, the high nibbles values 16+4t..16+4t+3; Q8_0:
//               values 4t..4t+3);
//   qh[2t], qh[2t+1]  (5-bit types) bit 4j+i is row j's 5th bit of the low / high
//               nibble values of vector t.
// Same bytes as the 8 ggml rows; a lossless permutation. The groups of the 4- and
// 5-bit types are further interleaved in sets of 4 (kernels.h, "Sets").
struct BlockQ4_0x8 { uint16_t d[8]; uint8_t qs[128]; };
struct BlockQ4_1x8 { uint16_t d[8]; uint16_t m[8]; uint8_t qs[128]; };
struct BlockQ5_0x8 { uint16_t d[8]; uint32_t qh[8]; uint8_t qs[128]; };
struct BlockQ5_1x8 { uint16_t d[8]; uint16_t m[8]; uint32_t qh[8]; uint8_t qs[128]; };
struct BlockQ8_0x8 { uint16_t d[8]; int8_t qs[256]; };
struct BlockIQ4_NLx8 { uint16_t d[8]; uint8_t qs[128]; };
// Q4_K x8: sub-block s (32 values) of row j has scale sc and min mn (6 bits):
// sl[8s+j] = sc & 15 | (mn & 15) << 4, bits 4j..4j+3 of sh[s] = sc >> 4 | (mn >> 4) << 2.
// qs: 32 vectors; byte 4j+c of vector 8i+t is row j's qs[32i+4t+c] (low nibble: value
// 64i+4t+c, high nibble: value 64i+32+4t+c).
struct BlockQ4_Kx8 { uint16_t d[8]; uint16_t dmin[8]; uint8_t sl[64]; uint32_t sh[8]; uint8_t qs[1024]; };
// Q6_K x8: scales[8s+j] = row j's scale of sub-block s (16 values); byte 4j+c of ql
// vector v is row j's ql[4v+c], of qh vector v row j's qh[4v+c]. q holds them in the
// order a one-token decode reads them, 96 bytes per step i = 8h + t (h = 0, 1;
// t = 0..7): ql vector 16h + t, ql vector 16h + 8 + t, qh vector 8h + t.
struct BlockQ6_Kx8 { uint16_t d[8]; int8_t scales[128]; uint8_t q[1536]; };
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
static_assert(sizeof(BlockQ4_0x8) == 8 * sizeof(BlockQ4_0), "Q4_0 x8 block size");
static_assert(sizeof(BlockQ4_1x8) == 8 * sizeof(BlockQ4_1), "Q4_1 x8 block size");
static_assert(sizeof(BlockQ5_0x8) == 8 * sizeof(BlockQ5_0), "Q5_0 x8 block size");
static_assert(sizeof(BlockQ5_1x8) == 8 * sizeof(BlockQ5_1), "Q5_1 x8 block size");
static_assert(sizeof(BlockQ8_0x8) == 8 * sizeof(BlockQ8_0), "Q8_0 x8 block size");
static_assert(sizeof(BlockIQ4_NLx8) == 8 * sizeof(BlockIQ4_NL), "IQ4_NL x8 block size");
static_assert(sizeof(BlockQ4_Kx8) == 8 * sizeof(BlockQ4_K), "Q4_K x8 block size");
static_assert(sizeof(BlockQ6_Kx8) == 8 * sizeof(BlockQ6_K), "Q6_K x8 block size");

// The 16 signed levels of IQ4_NL / IQ4_XS.
extern const int8_t kIQ4NLValues[16];

// fp16 bit pattern -> float32 for all 65,536 patterns, exact; filled at load
// time (types.cpp). Kernels broadcast scales straight from it.
extern float g_fp16_to_fp32[65536];

}  // namespace ll
