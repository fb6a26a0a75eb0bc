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

// src [nrows, n_per_row] float32 -> dst [nrows, row_bytes(type, n_per_row)].
// n_per_row must be a multiple of the type's block size; imatrix is null or
// n_per_row importance weights (one per column) and is ignored by F16, BF16 and
// Q8_0, as in llama.cpp. pool may be null (single thread).
// std::invalid_argument for a type it cannot produce or a bad row length.
void quantize_rows(int32_t type, const float* src, void* dst, int64_t nrows, int64_t n_per_row,
                   const float* imatrix, ThreadPool* pool);

// One row (the unit quantize_rows splits the work into).
void quantize_row(int32_t type, const float* src, void* dst, int64_t n_per_row, const float* imatrix);

// float32 -> bf16 bits, rounding to nearest even as ggml does (a NaN keeps its
// top bits and gets the quiet bit). fp32_to_fp16 is in kv_cache.h.
uint16_t fp32_to_bf16(float f);

}  // namespace ll
