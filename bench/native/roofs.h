// roofs.h - the measurement loops behind bench/kernels.py: the core's matmul
// under test and what it is compared with (read bandwidth, int8 peak, decode
// floors), all timed in C++ on the core's own thread pool so Python overhead
// stays out. Built into the llamalite_bench module (bench/native), never into
// llamalite._core.
#pragma once
#include <cstddef>
#include <cstdint>

namespace ll {
class ThreadPool;
}

namespace llbench {

// Read n bytes as fast as the ISA can (returns a value that depends on every
// byte, so the loop is not removed) ...
using ReadBytesFn = uint64_t (*)(const uint8_t* p, size_t n);
// ... and run iters rounds of independent int8 dot-product instructions on
// registers; *macs_per_iter receives the multiply-adds one round does.
using Int8PeakFn = int64_t (*)(int64_t iters, int64_t* macs_per_iter);
// The decode floors are ReadBytesFns: n bytes of packed nibbles (4-bit) or of
// int8 weights (8-bit) through the least work a matmul of such weights does per
// byte (roofs_simd.inc).

// The loops of one instruction set. Same ODR rule as the core's KernelTable
// (csrc/kernel_table.h): the ISA units export plain table-filling functions only.
struct RoofTable {
  ReadBytesFn read_bytes = nullptr;
  Int8PeakFn int8_peak = nullptr;
  Int8PeakFn int8_peak_alt = nullptr;   // another vector width, where the ISA has one
  Int8PeakFn int8_peak_tile = nullptr;  // AMX tile products (the amx set only)
  ReadBytesFn decode4_floor = nullptr;      // the SIMD sets only
  ReadBytesFn decode4_floor_alt = nullptr;  // another vector width, where the ISA has one
  ReadBytesFn decode8_floor = nullptr;
  ReadBytesFn decode8_floor_alt = nullptr;
};

// Each fills the entries it implements; the caller starts from the generic table.
void fill_generic_roofs(RoofTable* t);
void fill_avx2_roofs(RoofTable* t);
void fill_avx512_roofs(RoofTable* t);
void fill_amx_roofs(RoofTable* t);  // avx512 plus the tile peak where the build has AMX

// The loops of the core's active instruction set (ll::active_isa()).
const RoofTable& active_roofs();

// GB/s reading n_copies buffers of nbytes each, one after the other, split
// between the pool's threads (n_copies > 1 puts the data out of cache): the
// mean over reps passes after one warm-up pass.
double read_bandwidth(ll::ThreadPool& pool, size_t nbytes, int n_copies, int reps);

// GMAC/s of int8 dot-product instructions on registers, every pool thread busy.
// tile: the AMX tile-product rate instead (0 when the active ISA has no tiles).
double int8_peak(ll::ThreadPool& pool, bool tile = false);

// Seconds per matmul, averaged over iters calls that cycle through n_copies
// weight matrices (each N x row_bytes, back to back at W).
// x8: W is in the x8 layout (kernels.h), as the model keeps its layer weights.
double time_matmul(ll::ThreadPool& pool, int32_t type, const uint8_t* W, int n_copies, int64_t N, int64_t K,
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
void matmul_vs_read(ll::ThreadPool& pool, int32_t type, const uint8_t* W, int n_copies, int64_t N, int64_t K,
                    const float* X, int64_t M, float* Y, int iters, double* matmul_s, double* read_s,
                    bool x8 = false, double* floor_s = nullptr);

}  // namespace llbench
