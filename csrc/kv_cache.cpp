// kv_cache.cpp - allocation, writes and block copies of the paged KV pool.
#include "kv_cache.h"

#include <cstring>
#include <stdexcept>
#include <string>

namespace ll {

uint16_t fp32_to_fp16(float f) {
  uint32_t x;
  std::memcpy(&x, &f, 4);
  const uint32_t sign = (x >> 16) & 0x8000u;
  const uint32_t exp = (x >> 23) & 0xffu;
  uint32_t mant = x & 0x7fffffu;
  if (exp == 0xffu) return (uint16_t)(sign | 0x7c00u | (mant ? 0x200u : 0u));   // inf / nan
  const int32_t e = (int32_t)exp - 127 + 15;
  if (e >= 31) return (uint16_t)(sign | 0x7c00u);                                  // overflow
  if (e <= 0) {                                                                  // subnormal / zero
    if (e < -10) return (uint16_t)sign;
    mant |= 0x800000u;
    const uint32_t shift = (uint32_t)(14 - e);
    uint32_t h = mant >> shift;
    const uint32_t rem = mant & ((1u << shift) - 1u), half = 1u << (shift - 1);
    if (rem > half || (rem == half && (h & 1u))) ++h;
    return (uint16_t)(sign | h);
  }
  uint32_t h = ((uint32_t)e << 10) | (mant >> 13);
  const uint32_t rem = mant & 0x1fffu;
  if (rem > 0x1000u || (rem == 0x1000u && (h & 1u))) ++h;   // may carry into the exponent: fine
  return (uint16_t)(sign | h);
}

KVCache::KVCache(int32_t n_layer_, int32_t n_blocks_, int32_t block_size_, int32_t n_head_kv_,
                 int32_t head_dim_, int32_t head_dim_v_, KVType type_)
    : n_layer(n_layer_), n_blocks(n_blocks_), block_size(block_size_), n_head_kv(n_head_kv_),
      head_dim(head_dim_), head_dim_v(head_dim_v_), type(type_),
      elem_size(type_ == KVType::f32 ? 4 : 2) {
  if (n_layer <= 0 || n_blocks <= 0 || block_size <= 0 || n_head_kv <= 0 || head_dim <= 0 ||
      head_dim_v <= 0) {
    throw std::invalid_argument("KV cache sizes must be positive (n_blocks=" +
                                std::to_string(n_blocks) + ", block_size=" +
                                std::to_string(block_size) + ")");
  }
  const double bytes = (double)n_layer * n_blocks * block_size * n_head_kv * (head_dim + head_dim_v) *
                       (double)elem_size;
  if (bytes > double(1ull << 40)) {
    throw std::invalid_argument("KV cache of " + std::to_string(n_blocks) + " blocks x " +
                                std::to_string(block_size) + " tokens is too large to allocate");
  }
  const size_t per_pos = (size_t)n_layer * n_blocks * block_size * n_head_kv;
  k.assign(per_pos * head_dim * elem_size, 0);
  v.assign(per_pos * head_dim_v * elem_size, 0);
}

void KVCache::write(int32_t layer, int32_t block, int32_t slot, const float* keys,
                    const float* values) {
  const size_t nk = (size_t)n_head_kv * head_dim, nv = (size_t)n_head_kv * head_dim_v;
  uint8_t* kd = k.data() + offset(layer, block, slot) * head_dim * elem_size;
  uint8_t* vd = v.data() + offset(layer, block, slot) * head_dim_v * elem_size;
  if (type == KVType::f32) {
    std::memcpy(kd, keys, nk * sizeof(float));
    std::memcpy(vd, values, nv * sizeof(float));
    return;
  }
  uint16_t* kh = reinterpret_cast<uint16_t*>(kd);
  uint16_t* vh = reinterpret_cast<uint16_t*>(vd);
  for (size_t i = 0; i < nk; ++i) kh[i] = fp32_to_fp16(keys[i]);
  for (size_t i = 0; i < nv; ++i) vh[i] = fp32_to_fp16(values[i]);
}

void KVCache::copy_block(int32_t src, int32_t dst) {
  if (src < 0 || src >= n_blocks || dst < 0 || dst >= n_blocks) {
    throw std::invalid_argument("copy_block: block id out of range [0, " +
                                std::to_string(n_blocks) + ")");
  }
  const size_t k_bytes = (size_t)block_size * n_head_kv * head_dim * elem_size;
  const size_t v_bytes = (size_t)block_size * n_head_kv * head_dim_v * elem_size;
  for (int32_t l = 0; l < n_layer; ++l) {
    std::memmove(k.data() + offset(l, dst, 0) * head_dim * elem_size,
                 k.data() + offset(l, src, 0) * head_dim * elem_size, k_bytes);
    std::memmove(v.data() + offset(l, dst, 0) * head_dim_v * elem_size,
                 v.data() + offset(l, src, 0) * head_dim_v * elem_size, v_bytes);
  }
}

}  // namespace ll
