// matmul.cpp - activation buffers, and matmul dispatched to the active ISA.
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <string>

#include "kernel_table.h"
#include "kernels.h"
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

QuantizedActs::~QuantizedActs() { std::free(data); }

void QuantizedActs::prepare(int32_t wtype, int64_t m, int64_t k) {
  const int32_t at = act_type_for(wtype);
  const TypeTraits& t = type_traits(wtype);
  if (m < 0 || k <= 0 || k % t.block_size != 0) {
    throw std::invalid_argument("matmul: K = " + std::to_string(k) + " must be a positive multiple of the " +
                                t.name + " block size " + std::to_string(t.block_size));
  }
  const size_t rb = act_row_bytes(at, k);
  const size_t need = rb * (size_t)m;
  if (need > capacity || data == nullptr) {
    std::free(data);
    data = nullptr;
    capacity = 0;
    const size_t alloc = ((need + 63) / 64) * 64 + 64;
    data = (uint8_t*)std::aligned_alloc(64, alloc);
    if (!data) throw std::bad_alloc();
    capacity = alloc;
  }
  weight_type = wtype;
  act_type = at;
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

static void matmul_range_typed(int32_t wt, const void* W, const QuantizedActs& xq, float* Y, int64_t ldy, int64_t n0,
                               int64_t n1) {
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
                   QuantizedActs& xq) {
  xq.prepare(weight_type, M, K);
  const int64_t rows_per_chunk = 16;
  pool.run_chunks((M + rows_per_chunk - 1) / rows_per_chunk, [&](int64_t c) {
    const int64_t m0 = c * rows_per_chunk, m1 = m0 + rows_per_chunk < M ? m0 + rows_per_chunk : M;
    quantize_acts_rows(X, ldx, xq, m0, m1);
  });
}

static void check_pairing(int32_t weight_type, const QuantizedActs& xq) {
  if (act_type_for(weight_type) != xq.act_type || xq.K % type_traits(weight_type).block_size != 0) {
    throw std::invalid_argument(std::string("matmul: activations prepared for ") + type_traits(xq.weight_type).name +
                                " cannot be used with " + type_traits(weight_type).name + " weights");
  }
}

// Weight rows per chunk: about 8 chunks per thread, each a multiple of 8 rows.
static int64_t chunk_rows(int64_t N, int n_threads) {
  int64_t chunk = (N + 8 * n_threads - 1) / (8 * n_threads);
  chunk = ((chunk + 7) / 8) * 8;
  return chunk < 16 ? 16 : chunk;
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
    const int64_t N = xq.M > 0 && tasks[i].N > 0 ? tasks[i].N : 0;
    chunk[i] = chunk_rows(N, pool.size());
    first[i + 1] = first[i] + (N + chunk[i] - 1) / chunk[i];
  }
  pool.run_chunks(first[count], [&](int64_t c) {
    int32_t i = 0;
    while (c >= first[i + 1]) i++;
    const MatmulTask& t = tasks[i];
    const int64_t n0 = (c - first[i]) * chunk[i], n1 = n0 + chunk[i] < t.N ? n0 + chunk[i] : t.N;
    matmul_range_typed(t.weight_type, t.W, xq, t.Y, t.ldy, n0, n1);
  });
}

void matmul(ThreadPool& pool, int32_t weight_type, const void* W, int64_t N, int64_t K, const float* X, int64_t M,
            float* Y) {
  thread_local QuantizedActs xq;
  quantize_acts(pool, weight_type, X, K, M, K, xq);
  matmul_prepared(pool, weight_type, W, N, xq, Y, N);
}

}  // namespace ll
