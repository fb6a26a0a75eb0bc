// kv_cache.h - the paged KV cache: one pool of fixed-size blocks for all layers.
//
// A block holds `block_size` consecutive positions of one sequence, for every
// layer. A sequence's block table maps position p to block table[p / block_size],
// slot p % block_size. Blocks are owned and shared by the Python engine (prefix
// caching, reference counts); the core only reads and writes the rows it is told.
// Storage is float16 (as llama.cpp's default: half the memory and bandwidth) or
// float32 (exact).
#pragma once
#include <cstddef>
#include <cstdint>
#include <vector>

namespace ll {

enum class KVType : int32_t { f32 = 0, f16 = 1 };

struct KVCache {
  int32_t n_layer = 0, n_blocks = 0, block_size = 0;
  int32_t n_head_kv = 0, head_dim = 0, head_dim_v = 0;
  KVType type = KVType::f16;
  size_t elem_size = 2;      // bytes per stored value
  // k [n_layer, n_blocks, block_size, n_head_kv, head_dim]    of `type`
  // v [n_layer, n_blocks, block_size, n_head_kv, head_dim_v]  of `type`
  std::vector<uint8_t> k, v;

  // Throws std::invalid_argument for non-positive sizes or a pool too big to allocate.
  KVCache(int32_t n_layer, int32_t n_blocks, int32_t block_size, int32_t n_head_kv,
          int32_t head_dim, int32_t head_dim_v, KVType type);

  // Start of the n_head_kv * head_dim keys (values) of one position of a layer.
  const uint8_t* k_at(int32_t layer, int32_t block, int32_t slot) const {
    return k.data() + offset(layer, block, slot) * head_dim * elem_size;
  }
  const uint8_t* v_at(int32_t layer, int32_t block, int32_t slot) const {
    return v.data() + offset(layer, block, slot) * head_dim_v * elem_size;
  }
  // Stores one position's keys [n_head_kv * head_dim] and values [n_head_kv * head_dim_v].
  void write(int32_t layer, int32_t block, int32_t slot, const float* keys, const float* values);
  // Bytes held by the pool.
  size_t nbytes() const { return k.size() + v.size(); }
  // Copy every layer's K/V of block `src` into block `dst` (copy-on-write for the engine).
  void copy_block(int32_t src, int32_t dst);

 private:
  // Index of the first head of (layer, block, slot), in units of one head's values.
  size_t offset(int32_t layer, int32_t block, int32_t slot) const {
    return ((((size_t)layer * n_blocks + block) * block_size + slot) * n_head_kv);
  }
};

// float32 -> float16 bits, round to nearest even (inf/nan kept, overflow -> inf).
uint16_t fp32_to_fp16(float f);

}  // namespace ll
