// roofs.cpp - the measurement loops of roofs.h, the scalar (generic) roofs, and
// the choice of roof table by the core's active instruction set.
#include "roofs.h"

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "kernels.h"
#include "threadpool.h"

namespace llbench {

using ll::ThreadPool;

static double now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// One read pass over n bytes on the pool, in chunks claimed dynamically.
static uint64_t read_pass(ThreadPool& pool, ReadBytesFn read, const uint8_t* p, size_t nbytes) {
  std::atomic<uint64_t> sink{0};
  // 2 chunks per thread, as a one-token decode splits a weight (matmul.cpp): each
  // chunk is a new stream for the hardware prefetchers. 64 KB chunks read 20-30%
  // slower from DRAM.
  size_t chunk = (nbytes + 2 * (size_t)pool.size() - 1) / (2 * (size_t)pool.size());
  chunk = (chunk + 4095) / 4096 * 4096;
  const int64_t n_chunks = (int64_t)((nbytes + chunk - 1) / chunk);
  pool.run_chunks(n_chunks, [&](int64_t ci) {
    const size_t b0 = (size_t)ci * chunk, b1 = b0 + chunk < nbytes ? b0 + chunk : nbytes;
    sink.fetch_add(read(p + b0, b1 - b0), std::memory_order_relaxed);
  });
  return sink.load();
}

double read_bandwidth(ThreadPool& pool, size_t nbytes, int n_copies, int reps) {
  if (n_copies < 1) n_copies = 1;
  if (reps < 1) reps = 1;
  const size_t total = nbytes * (size_t)n_copies;
  uint8_t* buf = (uint8_t*)std::aligned_alloc(64, ((total + 63) / 64) * 64);
  if (!buf) return 0.0;
  for (size_t i = 0; i < total; i++) buf[i] = (uint8_t)(i * 131 + 7);
  const ReadBytesFn read = active_roofs().read_bytes;
  std::atomic<uint64_t> sink{0};
  // One warm-up pass, then the mean over `reps` passes: timed like
  // time_matmul (a mean over many calls), so both see the same machine.
  double t0 = 0.0;
  for (int rep = 0; rep < reps + 1; rep++) {
    if (rep == 1) t0 = now_s();
    for (int c = 0; c < n_copies; c++) sink.fetch_add(read_pass(pool, read, buf + (size_t)c * nbytes, nbytes));
  }
  const double gbs = (double)total * reps / (now_s() - t0) / 1e9;
  std::free(buf);
  return sink.load() == 42 ? gbs + 1e-12 : gbs;
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

double int8_peak(ThreadPool& pool, bool tile) {
  const RoofTable& kt = active_roofs();
  if (tile) return kt.int8_peak_tile ? int8_peak_of(pool, kt.int8_peak_tile) : 0.0;
  // The better of the ISA's vector widths (512- and 256-bit vpdpbusd on AVX-512).
  double best = int8_peak_of(pool, kt.int8_peak);
  if (kt.int8_peak_alt) {
    const double alt = int8_peak_of(pool, kt.int8_peak_alt);
    if (alt > best) best = alt;
  }
  return best;
}

// One matmul on either layout.
static void run_matmul(ThreadPool& pool, int32_t type, const uint8_t* W, int64_t N, int64_t K, const float* X,
                       int64_t M, float* Y, bool x8) {
  if (x8) ll::matmul_x8(pool, type, W, N, K, X, M, Y);
  else ll::matmul(pool, type, W, N, K, X, M, Y);
}

double time_matmul(ThreadPool& pool, int32_t type, const uint8_t* W, int n_copies, int64_t N, int64_t K,
                    const float* X, int64_t M, float* Y, int iters, bool x8) {
  const size_t wbytes = ll::row_bytes(type, K) * (size_t)N;
  run_matmul(pool, type, W, N, K, X, M, Y, x8);  // warm-up
  const double t0 = now_s();
  for (int i = 0; i < iters; i++) {
    run_matmul(pool, type, W + (size_t)(i % n_copies) * wbytes, N, K, X, M, Y, x8);
  }
  return (now_s() - t0) / iters;
}

void matmul_vs_read(ThreadPool& pool, int32_t type, const uint8_t* W, int n_copies, int64_t N, int64_t K,
                    const float* X, int64_t M, float* Y, int iters, double* matmul_s, double* read_s,
                    bool x8, double* floor_s) {
  const size_t wbytes = ll::row_bytes(type, K) * (size_t)N;
  const RoofTable& kt = active_roofs();
  const ReadBytesFn read = kt.read_bytes;
  // the floor passes only where asked and the ISA has them (both widths, the faster
  // counts): Q8_0's 8-bit floor, the 4-bit one for the other quantized types
  // (each needs at least its work per byte), none for float weights
  const bool q8 = type == ll::TYPE_Q8_0, quant = ll::type_traits(type).block_size > 1;
  const ReadBytesFn floors[2] = {floor_s && quant ? (q8 ? kt.decode8_floor : kt.decode4_floor) : nullptr,
                                 floor_s && quant ? (q8 ? kt.decode8_floor_alt : kt.decode4_floor_alt) : nullptr};
  uint64_t sink = 0;
  run_matmul(pool, type, W, N, K, X, M, Y, x8);  // warm-up
  sink += read_pass(pool, read, W, wbytes);
  double mm = 0.0, rd = 0.0, fl[2] = {0.0, 0.0};
  for (int i = 0; i < iters; i++) {
    const uint8_t* w = W + (size_t)(i % n_copies) * wbytes;
    // with several copies the read goes to one the matmul has not just touched
    const uint8_t* r = n_copies == 1 ? w : W + (size_t)((i + n_copies / 2) % n_copies) * wbytes;
    const double t0 = now_s();
    run_matmul(pool, type, w, N, K, X, M, Y, x8);
    const double t1 = now_s();
    sink += read_pass(pool, read, r, wbytes);
    const double t2 = now_s();
    rd += t2 - t1;
    mm += t1 - t0;
    for (int f = 0; f < 2; f++) {
      if (!floors[f]) continue;
      const double t3 = now_s();
      sink += read_pass(pool, floors[f], r, wbytes);
      fl[f] += now_s() - t3;
    }
  }
  *matmul_s = mm / iters;
  *read_s = rd / iters + (sink == 42 ? 1e-15 : 0.0);
  if (floor_s) {
    double best = 0.0;
    for (int f = 0; f < 2; f++)
      if (floors[f] && (best == 0.0 || fl[f] < best)) best = fl[f];
    *floor_s = best / iters;
  }
}

// --- the scalar roofs (generic) and the table of the active set -------------------

static uint64_t read_bytes_generic(const uint8_t* p, size_t n) {
  uint64_t a = 0, b = 0;
  size_t i = 0;
  for (; i + 16 <= n; i += 16) {
    uint64_t u, v;
    std::memcpy(&u, p + i, 8);
    std::memcpy(&v, p + i + 8, 8);
    a ^= u;
    b ^= v;
  }
  for (; i < n; i++) a += p[i];
  return a ^ b;
}

static int64_t int8_peak_generic(int64_t iters, int64_t* macs_per_iter) {
  int32_t acc[8] = {0, 1, 2, 3, 4, 5, 6, 7};
  volatile int8_t vu = 3, vs = -2;
  const int8_t u = vu, s = vs;
  for (int64_t i = 0; i < iters; i++) {
    for (int j = 0; j < 8; j++) acc[j] += u * s + (int32_t)(i & j);
  }
  *macs_per_iter = 8;
  int64_t t = 0;
  for (int j = 0; j < 8; j++) t += acc[j];
  return t;
}

void fill_generic_roofs(RoofTable* t) {
  t->read_bytes = read_bytes_generic;
  t->int8_peak = int8_peak_generic;
}

namespace {
struct Tables {
  RoofTable t[ll::kNumIsas];
  Tables() {
    fill_generic_roofs(&t[0]);
    // the aarch64 sets have no roof loops of their own: the generic ones
    for (int i = 1; i < ll::kNumIsas; i++) t[i] = t[0];
#if LLBENCH_X86
    // as csrc/isa.cpp fills the kernel tables: only the sets this CPU runs
    if (ll::isa_supported(ll::ISA::avx2)) fill_avx2_roofs(&t[1]);
    if (ll::isa_supported(ll::ISA::avx512)) fill_avx512_roofs(&t[2]);
    if (ll::isa_supported(ll::ISA::amx)) fill_amx_roofs(&t[3]);
#endif
  }
};
}  // namespace

const RoofTable& active_roofs() {
  static const Tables tables;
  return tables.t[(int)ll::active_isa()];
}

}  // namespace llbench
