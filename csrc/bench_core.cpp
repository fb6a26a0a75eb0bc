// bench_core.cpp - the measurement loops of bench_core.h.
#include "bench_core.h"

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "kernel_table.h"
#include "kernels.h"
#include "threadpool.h"

namespace ll {

static double now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

double bench_read_bandwidth(ThreadPool& pool, size_t nbytes, int n_copies, int reps) {
  if (n_copies < 1) n_copies = 1;
  if (reps < 1) reps = 1;
  const size_t total = nbytes * (size_t)n_copies;
  uint8_t* buf = (uint8_t*)std::aligned_alloc(64, ((total + 63) / 64) * 64);
  if (!buf) return 0.0;
  for (size_t i = 0; i < total; i++) buf[i] = (uint8_t)(i * 131 + 7);
  const ReadBytesFn read = active_kernels().read_bytes;
  std::atomic<uint64_t> sink{0};
  double best = 0.0;
  for (int rep = 0; rep < reps + 1; rep++) {  // the first pass warms up
    const double t0 = now_s();
    for (int c = 0; c < n_copies; c++) {
      const uint8_t* p = buf + (size_t)c * nbytes;
      // the same scheduling as matmul: 64 KB chunks claimed dynamically
      const size_t chunk = 64 * 1024;
      const int64_t n_chunks = (int64_t)((nbytes + chunk - 1) / chunk);
      pool.run_chunks(n_chunks, [&](int64_t ci) {
        const size_t b0 = (size_t)ci * chunk, b1 = b0 + chunk < nbytes ? b0 + chunk : nbytes;
        sink.fetch_add(read(p + b0, b1 - b0), std::memory_order_relaxed);
      });
    }
    const double dt = now_s() - t0;
    const double gbs = (double)total / dt / 1e9;
    if (rep > 0 && gbs > best) best = gbs;
  }
  std::free(buf);
  return sink.load() == 42 ? best + 1e-12 : best;
}

static double int8_peak_of(ThreadPool& pool, Int8PeakFn peak) {
  const int64_t iters = 2000000;
  std::atomic<int64_t> sink{0};
  std::atomic<int64_t> macs{0};
  double best = 0.0;
  for (int rep = 0; rep < 3; rep++) {
    const double t0 = now_s();
    // pool.size() threads' worth of work in 16 chunks each, claimed dynamically
    const int64_t n_chunks = 16 * pool.size();
    pool.run_chunks(n_chunks, [&](int64_t) {
      int64_t per = 0;
      sink.fetch_add(peak(iters / 16, &per), std::memory_order_relaxed);
      macs.store(per * (iters / 16) * n_chunks);
    });
    const double dt = now_s() - t0;
    const double g = (double)macs.load() / dt / 1e9;
    if (g > best) best = g;
  }
  return sink.load() == 42 ? best + 1e-12 : best;
}

double bench_int8_peak(ThreadPool& pool) {
  // The better of the ISA's vector widths (512- and 256-bit vpdpbusd on AVX-512).
  const KernelTable& kt = active_kernels();
  double best = int8_peak_of(pool, kt.int8_peak);
  if (kt.int8_peak_alt) {
    const double alt = int8_peak_of(pool, kt.int8_peak_alt);
    if (alt > best) best = alt;
  }
  return best;
}

double bench_matmul(ThreadPool& pool, int32_t type, const uint8_t* W, int n_copies, int64_t N, int64_t K,
                    const float* X, int64_t M, float* Y, int iters) {
  const size_t wbytes = row_bytes(type, K) * (size_t)N;
  matmul(pool, type, W, N, K, X, M, Y);  // warm-up
  const double t0 = now_s();
  for (int i = 0; i < iters; i++) {
    matmul(pool, type, W + (size_t)(i % n_copies) * wbytes, N, K, X, M, Y);
  }
  return (now_s() - t0) / iters;
}

}  // namespace ll
