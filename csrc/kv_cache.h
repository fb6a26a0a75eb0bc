// kv_cache.h - the paged KV cache: one pool of fixed-size blocks for all layers.
//
// A block holds `block_size` consecutive positions of one sequence, for every
// layer. A sequence's block table maps position p to block table[p / block_size],
// slot p % block_size. Blocks are owned and shared by the Python engine (prefix
// caching, reference counts); the core only reads and writes the rows it is told.
// Storage is float32 (exact; the models this targets are small enough that the
// cache is a few MB per thousand tokens).
#pragma once
#include <cstddef>
#include <cstdint>
#include <vector>

namespace ll {

struct KVCache {
  int32_t n_layer = 0, n_blocks = 0, block_size = 0;
  int32_t n_head_kv = 0, head_dim = 0, head_dim_v = 0;
  // k [n_layer, n_blocks, block_size, n_head_kv, head_dim]
  // v [n_layer, n_blocks, block_size, n_head_kv, head_dim_v]
  std::vector<float> k, v;

  // Throws std::invalid_argument for non-positive sizes or a pool too big to allocate.
  KVCache(int32_t n_layer, int32_t n_blocks, int32_t block_size, int32_t n_head_kv,
          int32_t head_dim, int32_t head_dim_v);

  // Start of the n_head_kv * head_dim keys of one position (block, slot) of a layer.
  float* k_at(int32_t layer, int32_t block, int32_t slot) {
    return k.data() + ((((int64_t)layer * n_blocks + block) * block_size + slot) * n_head_kv) * head_dim;
  }
  const float* k_at(int32_t layer, int32_t block, int32_t slot) const {
    return k.data() + ((((int64_t)layer * n_blocks + block) * block_size + slot) * n_head_kv) * head_dim;
  }
  float* v_at(int32_t layer, int32_t block, int32_t slot) {
    return v.data() + ((((int64_t)layer * n_blocks + block) * block_size + slot) * n_head_kv) * head_dim_v;
  }
  const float* v_at(int32_t layer, int32_t block, int32_t slot) const {
    return v.data() + ((((int64_t)layer * n_blocks + block) * block_size + slot) * n_head_kv) * head_dim_v;
  }
  // Bytes held by the pool.
  size_t nbytes() const { return (k.size() + v.size()) * sizeof(float); }
  // Copy every layer's K/V of block `src` into block `dst` (copy-on-write for the engine).
  void copy_block(int32_t src, int32_t dst);
};

}  // namespace ll
