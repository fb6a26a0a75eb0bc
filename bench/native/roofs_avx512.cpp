// roofs_avx512.cpp - the AVX-512 roofs and decode floors (roofs_simd.inc on top of
// the core's kernels_simd.inc, with the flags and defines of csrc/kernels_avx512.cpp)
// and the AMX tile-product roof where the compiler has AMX. Plain functions inside
// their own namespace only (ODR: see csrc/kernel_table.h).
#include <immintrin.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <new>

#include "kernel_table.h"
#include "kernels.h"
#include "quant_blocks.h"
#include "roofs.h"

namespace ll {
namespace bench_avx512 {

#define LL_VNNI 1
#define LL_RM 4
#define LL_RN 4
#define LL_KRM 4
#define LL_KRN 2
#define LL_RN1 4
#define LL_KRN1 2
#define LL_XRM 8
#define LL_XKRM 4
#include "kernels_simd.inc"
#include "roofs_simd.inc"

#if defined(__AMX_TILE__) && defined(__AMX_INT8__)
#define LL_AMX_BUILT 1
#include "kernels_amx.inc"

namespace {

// The tile roof: 4 independent 16 x 16 x 64 products per round on full tiles.
int64_t int8_peak_amx(int64_t iters, int64_t* macs_per_iter) {
  AmxTileConfig c;
  for (int t = 0; t < 6; t++) {
    c.colsb[t] = 64;
    c.rows[t] = 16;
  }
  _tile_loadconfig(&c);
  alignas(64) int8_t a[1024], bm[1024];
  for (int i = 0; i < 1024; i++) {
    a[i] = (int8_t)(i % 7 - 3);
    bm[i] = (int8_t)(i % 5 - 2);
  }
  _tile_loadd(4, a, 64);
  _tile_loadd(5, bm, 64);
  _tile_zero(0);
  _tile_zero(1);
  _tile_zero(2);
  _tile_zero(3);
  for (int64_t i = 0; i < iters; i++) {
    _tile_dpbssd(0, 4, 5);
    _tile_dpbssd(1, 4, 5);
    _tile_dpbssd(2, 4, 5);
    _tile_dpbssd(3, 4, 5);
  }
  alignas(64) int32_t out[256];
  int64_t s = 0;
  _tile_stored(0, out, 64);
  s += out[0];
  _tile_stored(3, out, 64);
  s += out[255];
  _tile_release();
  *macs_per_iter = 4 * 16 * 16 * 64;
  return s;
}

}  // namespace
#else
#define LL_AMX_BUILT 0
#endif

}  // namespace bench_avx512
}  // namespace ll

void llbench::fill_avx512_roofs(RoofTable* t) { ll::bench_avx512::fill_roof_table(t); }

void llbench::fill_amx_roofs(RoofTable* t) {
  fill_avx512_roofs(t);
#if LL_AMX_BUILT
  t->int8_peak_tile = ll::bench_avx512::int8_peak_amx;
#endif
}
