// kv_cache.cpp - allocation and block copies of the paged KV pool.
#include "kv_cache.h"

#include <cstring>
#include <stdexcept>
#include <string>

namespace ll {

KVCache::KVCache(int32_t n_layer_, int32_t n_blocks_, int32_t block_size_, int32_t n_head_kv_,
                 int32_t head_dim_, int32_t head_dim_v_)
    : n_layer(n_layer_), n_blocks(n_blocks_), block_size(block_size_), n_head_kv(n_head_kv_),
      head_dim(head_dim_), head_dim_v(head_dim_v_) {
  if (n_layer <= 0 || n_blocks <= 0 || block_size <= 0 || n_head_kv <= 0 || head_dim <= 0 ||
      head_dim_v <= 0) {
    throw std::invalid_argument("KV cache sizes must be positive (n_blocks=" +
                                std::to_string(n_blocks) + ", block_size=" +
                                std::to_string(block_size) + ")");
  }
  const double floats = (double)n_layer * n_blocks * block_size * n_head_kv * (head_dim + head_dim_v);
  if (floats * sizeof(float) > double(1ull << 40)) {
    throw std::invalid_argument("KV cache of " + std::to_string(n_blocks) + " blocks x " +
                                std::to_string(block_size) + " tokens is too large to allocate");
  }
  const size_t per_pos = (size_t)n_layer * n_blocks * block_size * n_head_kv;
  k.assign(per_pos * head_dim, 0.0f);
  v.assign(per_pos * head_dim_v, 0.0f);
}

void KVCache::copy_block(int32_t src, int32_t dst) {
  if (src < 0 || src >= n_blocks || dst < 0 || dst >= n_blocks) {
    throw std::invalid_argument("copy_block: block id out of range [0, " +
                                std::to_string(n_blocks) + ")");
  }
  const size_t k_floats = (size_t)block_size * n_head_kv * head_dim;
  const size_t v_floats = (size_t)block_size * n_head_kv * head_dim_v;
  for (int32_t l = 0; l < n_layer; ++l) {
    std::memcpy(k_at(l, dst, 0), k_at(l, src, 0), k_floats * sizeof(float));
    std::memcpy(v_at(l, dst, 0), v_at(l, src, 0), v_floats * sizeof(float));
  }
}

}  // namespace ll
