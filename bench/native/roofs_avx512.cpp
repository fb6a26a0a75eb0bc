// roofs_avx512.cpp - the AVX-512 roofs and decode floors, and the AMX
// tile-product roof where the compiler has AMX. The core's AVX-512 unit
// (csrc/kernels_avx512.cpp, the AMX tiles included) is included whole, so this
// unit holds the module's only copy of it (CMakeLists.txt does not compile it
// separately) with the same flags, defines and register tiles; roofs_simd.inc then
// goes into the same namespace and uses the kernels' own primitives. Plain
// functions inside their own namespace only (ODR: see csrc/kernel_table.h).
#include "kernels_avx512.cpp"
#include "roofs.h"

namespace ll {
namespace avx512 {
#include "roofs_simd.inc"

#if LL_AMX_BUILT
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
#endif

}  // namespace avx512
}  // namespace ll

void llbench::fill_avx512_roofs(RoofTable* t) { ll::avx512::fill_roof_table(t); }

void llbench::fill_amx_roofs(RoofTable* t) {
  fill_avx512_roofs(t);
#if LL_AMX_BUILT
  t->int8_peak_tile = ll::avx512::int8_peak_amx;
#endif
}
