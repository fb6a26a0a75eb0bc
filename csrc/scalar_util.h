// scalar_util.h - small scalar helpers shared by the generic (baseline) units.
// Never include this from *_avx2.cpp / *_avx512.cpp (see kernel_table.h, ODR).
#pragma once
#include <cstdint>

namespace ll {

// fp16 bit pattern -> float32, exact; filled at load time (types.cpp).
extern float g_fp16_to_fp32[65536];

inline float fp16_to_fp32(uint16_t h) { return g_fp16_to_fp32[h]; }

// K-quant 6-bit scale and min j (0..7) from the 12 packed bytes (Q4_K, Q5_K).
inline void get_scale_min_k4(int j, const uint8_t* q, uint8_t* sc, uint8_t* m) {
  if (j < 4) {
    *sc = q[j] & 63;
    *m = q[j + 4] & 63;
  } else {
    *sc = (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4);
    *m = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
  }
}

// Q3_K: the 16 signed 6-bit scales (-32..31) from the 12 packed bytes.
inline void unpack_q3k_scales(const uint8_t* s, int8_t* out) {
  for (int k = 0; k < 16; k++) {
    int lo = (k < 8) ? (s[k] & 0xF) : (s[k - 8] >> 4);
    int hi = (s[8 + (k % 4)] >> (2 * (k / 4))) & 3;
    out[k] = (int8_t)((lo | (hi << 4)) - 32);
  }
}

}  // namespace ll
