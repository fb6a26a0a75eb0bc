// bench_core.h - measurement loops behind bench/kernels.py: the matmul under
// test and the two roofs it is compared with (read bandwidth, int8 peak), all
// timed in C++ on the core's own thread pool so Python overhead stays out.
#pragma once
#include <cstddef>
#include <cstdint>

namespace ll {

class ThreadPool;

// GB/s reading n_copies buffers of nbytes each, one after the other, split
// between the pool's threads (n_copies > 1 puts the data out of cache): the
// mean over reps passes after one warm-up pass.
double bench_read_bandwidth(ThreadPool& pool, size_t nbytes, int n_copies, int reps);

// GMAC/s of int8 dot-product instructions on registers, every pool thread busy.
// tile: the AMX tile-product rate instead (0 when the active ISA has no tiles).
double bench_int8_peak(ThreadPool& pool, bool tile = false);

// Seconds per matmul, averaged over iters calls that cycle through n_copies
// weight matrices (each N x row_bytes, back to back at W).
// x8: W is in the x8 layout (kernels.h), as the model keeps its layer weights.
double bench_matmul(ThreadPool& pool, int32_t type, const uint8_t* W, int n_copies, int64_t N, int64_t K,
                    const float* X, int64_t M, float* Y, int iters, bool x8 = false);

// Paired measurement for M = 1 style runs: iters rounds of (one matmul on
// weight copy i % n_copies, then one read pass with the roof's read loop over
// the same copy when n_copies is 1, else over the copy furthest from it, not
// in cache), so both see the same machine at a fine time scale.
// *matmul_s and *read_s receive the mean seconds of each. floor_s, when given,
// receives the mean seconds of a pass of the type's decode floor over the same
// bytes in each round: the 8-bit one for Q8_0, the 4-bit one for the other
// quantized types (the faster of the ISA's vector widths; 0 for float weights
// and where the ISA has no floor loop: generic).
void bench_matmul_vs_read(ThreadPool& pool, int32_t type, const uint8_t* W, int n_copies, int64_t N, int64_t K,
                          const float* X, int64_t M, float* Y, int iters, double* matmul_s, double* read_s,
                          bool x8 = false, double* floor_s = nullptr);

}  // namespace ll
