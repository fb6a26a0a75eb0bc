// quantize.h - float32 rows -> GGUF block types, bit-identical to llama.cpp's
// ggml_quantize_chunk (the file quantizer behind llama-quantize).
//
// Without an importance matrix each type takes llama.cpp's reference path
// (quantize_row_*_ref; IQ4_NL and IQ4_XS their search with unit-free weights);
// with one, the weighted searches. Every row is independent, so rows are split
// across the pool and the bytes do not depend on the thread count.
#pragma once
#include <cstdint>
#include <vector>

namespace ll {

class ThreadPool;

// The types quantize_rows can produce (GGUF type ids).
const std::vector<int32_t>& quantize_types();
bool can_quantize(int32_t type);

// src [nrows, row_bytes(src_type, n_per_row)] -> dst [nrows, row_bytes(type, n_per_row)].
// src_type is F32 or any type dequantize_row reads (F16, BF16, the quantized
// types): each worker converts its rows to float32 one at a time in a buffer of
// its own, so a 16-bit tensor is quantized without a float32 copy of it.
// n_per_row must be a multiple of both types' block sizes; imatrix is null or
// n_per_row importance weights (one per column) and is ignored by F16, BF16 and
// Q8_0, as in llama.cpp. pool may be null (single thread).
// std::invalid_argument for a type it cannot produce or a bad row length.
void quantize_rows(int32_t type, int32_t src_type, const void* src, void* dst, int64_t nrows,
                   int64_t n_per_row, const float* imatrix, ThreadPool* pool);

// One row (the unit quantize_rows splits the work into).
void quantize_row(int32_t type, const float* src, void* dst, int64_t n_per_row, const float* imatrix);

// float32 -> bf16 bits, rounding to nearest even as ggml does (a NaN keeps its
// top bits and gets the quiet bit). fp32_to_fp16 is in kv_cache.h.
uint16_t fp32_to_bf16(float f);

// The AVX2 unit (quantize_avx2.cpp): the same bits as the scalar code, 8
// sub-blocks per vector. Called by quantize.cpp (and dequant.cpp for F16) when the
// active ISA has AVX2.
namespace quant_avx2 {
// One Q4_K / Q5_K super-block's reference search: 8 sub-blocks of 32 -> their
// scales, mins (the_min) and levels L[256].
void k4_ref_fit(const float* x, int nmax, float rmin, int nstep, float* scales, float* mins, uint8_t* L);
// fit_min_weighted (the imatrix search: levels 0..nmax, grid -0.9 + 0.05 k, k <= 36)
// of 8 sub-blocks of n = 16 or 32 values x[8 n] with weights w[8 n].
void fit_min_weighted_x8(int n, const float* x, const float* w, int nmax, float* scales, float* mins, uint8_t* L);
// Q2_K's reference search (weights |x|, absolute errors) of 8 sub-blocks of 16, x[128].
void q2_k_ref_fit(const float* x, float* scales, float* mins, uint8_t* L);
// fit_signed of 8 sub-blocks of n = 16 or 32 values (x[8 n]): signed levels
// -nmax..nmax-1, weights qw[8 n] or x^2 when null. L gets level + nmax.
void signed_fit_x8(int n, const float* x, const float* qw, int nmax, float* scales, int8_t* L);
// Q3_K's reference search (fit_signed_q3, nmax 4) of 8 sub-blocks of 16, x[128].
void q3_k_ref_fit(const float* x, float* scales, int8_t* L);
// The IQ4 scale search of 8 sub-blocks of 32 values x[256] with weights w[256]
// (0 for an all-zero sub-block).
void iq4_scales_x8(const float* x, const float* w, float* scales);
// nb Q8_0 blocks (reference path).
void q8_0_blocks(const float* x, void* dst, int64_t nb, uint16_t (*to_fp16)(float));
// n values to fp16 bits (NaNs through to_fp16, the scalar conversion).
void f16_row(const float* x, uint16_t* y, int64_t n, uint16_t (*to_fp16)(float));
// n fp16 values to float32 (NaNs through to_fp32, the scalar conversion); dequantize_row's
// F16 path on x86.
void f16_to_f32_row(const uint16_t* x, float* y, int64_t n, float (*to_fp32)(uint16_t));
}  // namespace quant_avx2

}  // namespace ll
