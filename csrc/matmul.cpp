// matmul.cpp - activation buffers, and matmul dispatched to the active ISA.
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

#include "kernel_table.h"
#include "kernels.h"
#include "platform.h"
#include "quant_blocks.h"
#include "threadpool.h"

namespace ll {

// The activation block type paired with a weight type.
static int32_t act_type_for(int32_t weight_type) {
  switch (weight_type) {
    case TYPE_F32: case TYPE_F16: case TYPE_BF16:
      return TYPE_F32;
    case TYPE_Q4_0: case TYPE_Q4_1: case TYPE_Q5_0: case TYPE_Q5_1: case TYPE_Q8_0: case TYPE_IQ4_NL:
      return TYPE_Q8_0;
    case TYPE_Q2_K: case TYPE_Q3_K: case TYPE_Q4_K: case TYPE_Q5_K: case TYPE_Q6_K: case TYPE_IQ4_XS:
      return TYPE_Q8_K;
    default:
      throw std::invalid_argument(std::string("matmul: weight type ") + type_traits(weight_type).name +
                                  " is not supported as a matmul weight");
  }
}

static size_t act_row_bytes(int32_t act_type, int64_t K) {
  if (act_type == TYPE_F32) return (size_t)K * sizeof(float);
  if (act_type == TYPE_Q8_0) return (size_t)(K / QK32) * sizeof(BlockQ8A);
  return (size_t)(K / QK_K) * sizeof(BlockQ8_K);
}

QuantizedActs::~QuantizedActs() { aligned_free(data); }

static bool is_float_type(int32_t t) { return t == TYPE_F32 || t == TYPE_F16 || t == TYPE_BF16; }

void QuantizedActs::prepare(int32_t wtype, int64_t m, int64_t k, bool precise_mode) {
  int32_t at = act_type_for(wtype);   // also rejects types matmul does not support
  if (precise_mode) at = TYPE_F32;
  const TypeTraits& t = type_traits(wtype);
  if (m < 0 || k <= 0 || k % t.block_size != 0) {
    throw std::invalid_argument("matmul: K = " + std::to_string(k) + " must be a positive multiple of the " +
                                t.name + " block size " + std::to_string(t.block_size));
  }
  const size_t rb = act_row_bytes(at, k);
  const size_t need = rb * (size_t)m;
  if (need > capacity || data == nullptr) {
    aligned_free(data);
    data = nullptr;
    capacity = 0;
    const size_t alloc = ((need + 63) / 64) * 64 + 64;
    data = (uint8_t*)aligned_malloc(64, alloc);
    if (!data) throw std::bad_alloc();
    capacity = alloc;
  }
  weight_type = wtype;
  act_type = at;
  precise = precise_mode;
  M = m;
  K = k;
  row_bytes = rb;
}

void quantize_acts_rows(const float* X, int64_t ldx, QuantizedActs& xq, int64_t m0, int64_t m1) {
  const KernelTable& kt = active_kernels();
  for (int64_t m = m0; m < m1; m++) {
    const float* x = X + m * ldx;
    uint8_t* dst = xq.data + (size_t)m * xq.row_bytes;
    if (xq.act_type == TYPE_F32) std::memcpy(dst, x, (size_t)xq.K * sizeof(float));
    else if (xq.act_type == TYPE_Q8_0) kt.quantize_q8a(x, dst, xq.K);
    else kt.quantize_q8k(x, dst, xq.K);
  }
}

// Weight rows dequantized per pass of the precise path: about kPreciseScratchBytes of
// float32 (stays in L2 while every activation row is dotted with it).
constexpr size_t kPreciseScratchBytes = 256 * 1024;

// Precise mode, quantized weights: dequantize rows [n0, n1) of W a slab at a time into
// a per-thread scratch [rows, K] and run the active ISA's F32 kernel on the slab.
// Each output is one F32-kernel dot product of two float rows, so it does not depend
// on the slab or chunk it falls in (batch invariance holds as in the fast path).
static void matmul_range_precise(int32_t wt, const void* W, int64_t N, bool x8, const QuantizedActs& xq, float* Y,
                               int64_t ldy, int64_t n0, int64_t n1) {
  const KernelTable& kt = active_kernels();
  MatmulFn fn = kt.matmul[TYPE_F32];
  const int64_t K = xq.K;
  const size_t wrb = row_bytes(wt, K);
  int64_t slab = (int64_t)(kPreciseScratchBytes / ((size_t)K * sizeof(float)));
  slab = slab < 8 ? 8 : slab / 8 * 8;
  thread_local std::vector<float> scratch;   // [slab, K] dequantized weight rows
  if (scratch.size() < (size_t)(slab * K)) scratch.resize((size_t)(slab * K));
  for (int64_t s0 = n0; s0 < n1; s0 += slab) {
    const int64_t s1 = s0 + slab < n1 ? s0 + slab : n1;
    thread_local std::vector<uint8_t> row;   // one ggml row unpacked from the x8 layout
    if (x8 && row.size() < wrb) row.resize(wrb);
    for (int64_t n = s0; n < s1; n++) {
      const uint8_t* src = (const uint8_t*)W + (size_t)n * wrb;
      if (x8) {
        unpack_x8_rows(wt, (const uint8_t*)W, N, K, n, n + 1, row.data());
        src = row.data();
      }
      dequantize_row(wt, src, scratch.data() + (size_t)(n - s0) * K, K);
    }
    // The slab's row 0 is output column s0: shift Y so the kernel's columns [0, s1 - s0) land there.
    fn((const uint8_t*)scratch.data(), (size_t)K * sizeof(float), xq.data, xq.row_bytes, xq.M, K, Y + s0, ldy, 0,
       s1 - s0);
  }
}

// x8 layout, N rows: rows [n0, n1), whole sets (kernel_table.h: n0 and n1 multiples
// of 8 * x8_set_groups, or n1 = N).
static void matmul_range_x8(int32_t wt, const void* W, int64_t N, const QuantizedActs& xq, float* Y, int64_t ldy,
                            int64_t n0, int64_t n1) {
  if (n1 <= n0 || xq.M == 0) return;
  const int64_t set_rows = 8 * (int64_t)x8_set_groups(wt);
  if (n0 % set_rows != 0 || (n1 % set_rows != 0 && n1 != N)) {
    throw std::logic_error("matmul: x8 rows [" + std::to_string(n0) + ", " + std::to_string(n1) +
                           ") are not whole sets of " + std::to_string(set_rows));
  }
  if (xq.precise) {
    matmul_range_precise(wt, W, N, true, xq, Y, ldy, n0, n1);
    return;
  }
  const KernelTable& kt = active_kernels();
  const int64_t nb = xq.K / type_traits(wt).block_size;
  const size_t rb = row_bytes(wt, xq.K);
  if (MatmulFn fn = kt.matmul_x8[wt]) {
    fn((const uint8_t*)W, 8 * rb, xq.data, xq.row_bytes, xq.M, nb, Y, ldy, n0, n1);
    return;
  }
  // No x8 kernel for this ISA (generic): each group back to ggml rows, then the
  // ggml-row kernel on those 8 rows.
  thread_local std::vector<uint8_t> rows;   // [8, rb]
  if (rows.size() < 8 * rb) rows.resize(8 * rb);
  for (int64_t g = n0 / 8; g < n1 / 8; g++) {
    unpack_x8_rows(wt, (const uint8_t*)W, N, xq.K, 8 * g, 8 * g + 8, rows.data());
    kt.matmul[wt](rows.data(), rb, xq.data, xq.row_bytes, xq.M, nb, Y + 8 * g, ldy, 0, 8);
  }
}

static void matmul_range_typed(int32_t wt, const void* W, const QuantizedActs& xq, float* Y, int64_t ldy, int64_t n0,
                               int64_t n1) {
  if (xq.precise && !is_float_type(wt)) {
    if (n1 > n0 && xq.M > 0) matmul_range_precise(wt, W, 0, false, xq, Y, ldy, n0, n1);
    return;
  }
  const KernelTable& kt = active_kernels();
  const TypeTraits& t = type_traits(wt);
  MatmulFn fn = kt.matmul[wt];
  if (!fn) throw std::invalid_argument(std::string("matmul: no kernel for ") + t.name);
  if (n1 <= n0 || xq.M == 0) return;
  fn((const uint8_t*)W, row_bytes(wt, xq.K), xq.data, xq.row_bytes, xq.M, xq.K / t.block_size, Y, ldy, n0, n1);
}

void matmul_range(const void* W, const QuantizedActs& xq, float* Y, int64_t ldy, int64_t n0, int64_t n1) {
  matmul_range_typed(xq.weight_type, W, xq, Y, ldy, n0, n1);
}

// Work is handed out in chunks claimed dynamically (ThreadPool::run_chunks), so
// a worker the OS has descheduled does not stall the step. Every output is
// computed the same way whichever thread takes its chunk (batch invariance).
void quantize_acts(ThreadPool& pool, int32_t weight_type, const float* X, int64_t ldx, int64_t M, int64_t K,
                   QuantizedActs& xq, bool precise) {
  xq.prepare(weight_type, M, K, precise);
  const int64_t rows_per_chunk = 16;
  pool.run_chunks((M + rows_per_chunk - 1) / rows_per_chunk, [&](int64_t c) {
    const int64_t m0 = c * rows_per_chunk, m1 = m0 + rows_per_chunk < M ? m0 + rows_per_chunk : M;
    quantize_acts_rows(X, ldx, xq, m0, m1);
  });
}

static void check_pairing(int32_t weight_type, const QuantizedActs& xq) {
  const int32_t family = act_type_for(weight_type);   // throws for a type matmul cannot use
  const int32_t want = xq.precise ? TYPE_F32 : family;   // precise mode: float32 rows for every type
  if (want != xq.act_type || xq.K % type_traits(weight_type).block_size != 0) {
    throw std::invalid_argument(std::string("matmul: activations prepared for ") + type_traits(xq.weight_type).name +
                                " cannot be used with " + type_traits(weight_type).name + " weights");
  }
}

// Weight rows per chunk: about 8 chunks per thread, 2 for a one-token decode
// (M = 1). A decode chunk is a short sequential read: each new chunk is a new
// stream for the hardware prefetchers and a claim on the pool, and SmolLM2's
// 576-row weights came in 18 chunks of 32 rows. With 2 per thread, 2 threads:
// Q4_0 M = 1 from DRAM 58-71% -> 79-89% of the read roof, and SmolLM2's
// one-sequence decode 230-259 -> 300-311 tok/s (interleaved runs; Gemma 3
// +5%). 3 and 4 per thread were slower, 1 no faster. With two per thread a
// running thread still takes the chunks a descheduled one has not claimed.
// Multiples of 32: whole sets of four x8 row groups (kernels.h).
static int64_t chunk_rows(int64_t N, int n_threads, int64_t M) {
  const int64_t per_thread = M == 1 ? 2 : 8;
  int64_t chunk = (N + per_thread * n_threads - 1) / (per_thread * n_threads);
  chunk = ((chunk + 31) / 32) * 32;
  return chunk < 32 ? 32 : chunk;
}

void matmul_prepared(ThreadPool& pool, int32_t weight_type, const void* W, int64_t N, const QuantizedActs& xq,
                     float* Y, int64_t ldy) {
  const MatmulTask t{weight_type, W, N, Y, ldy};
  matmul_prepared_many(pool, &t, 1, xq);
}

void matmul_prepared_many(ThreadPool& pool, const MatmulTask* tasks, int32_t count, const QuantizedActs& xq) {
  constexpr int32_t kMaxTasks = 8;
  if (count < 0 || count > kMaxTasks) throw std::invalid_argument("matmul: 0 to 8 weights per call");
  int64_t chunk[kMaxTasks], first[kMaxTasks + 1];  // rows per chunk; first chunk index of each task
  first[0] = 0;
  for (int32_t i = 0; i < count; i++) {
    check_pairing(tasks[i].weight_type, xq);
    if (tasks[i].x8 && !x8_supported(tasks[i].weight_type, tasks[i].N, xq.K)) {
      throw std::invalid_argument(std::string("matmul: ") + type_traits(tasks[i].weight_type).name + " [" +
                                  std::to_string(tasks[i].N) + ", " + std::to_string(xq.K) +
                                  "] cannot be in the x8 layout");
    }
    const int64_t N = xq.M > 0 && tasks[i].N > 0 ? tasks[i].N : 0;
    chunk[i] = chunk_rows(N, pool.size(), xq.M);
    first[i + 1] = first[i] + (N + chunk[i] - 1) / chunk[i];
  }
  pool.run_chunks(first[count], [&](int64_t c) {
    int32_t i = 0;
    while (c >= first[i + 1]) i++;
    const MatmulTask& t = tasks[i];
    const int64_t n0 = (c - first[i]) * chunk[i], n1 = n0 + chunk[i] < t.N ? n0 + chunk[i] : t.N;
    if (t.x8) matmul_range_x8(t.weight_type, t.W, t.N, xq, t.Y, t.ldy, n0, n1);
    else matmul_range_typed(t.weight_type, t.W, xq, t.Y, t.ldy, n0, n1);
  });
}

void matmul_prepared_x8(ThreadPool& pool, int32_t weight_type, const void* W, int64_t N, const QuantizedActs& xq,
                        float* Y, int64_t ldy) {
  MatmulTask t{weight_type, W, N, Y, ldy};
  t.x8 = true;
  matmul_prepared_many(pool, &t, 1, xq);
}

void matmul_x8(ThreadPool& pool, int32_t weight_type, const void* W, int64_t N, int64_t K, const float* X, int64_t M,
               float* Y, bool precise) {
  thread_local QuantizedActs xq;
  quantize_acts(pool, weight_type, X, K, M, K, xq, precise);
  matmul_prepared_x8(pool, weight_type, W, N, xq, Y, N);
}

void matmul(ThreadPool& pool, int32_t weight_type, const void* W, int64_t N, int64_t K, const float* X, int64_t M,
            float* Y, bool precise) {
  thread_local QuantizedActs xq;
  quantize_acts(pool, weight_type, X, K, M, K, xq, precise);
  matmul_prepared(pool, weight_type, W, N, xq, Y, N);
}

}  // namespace ll
