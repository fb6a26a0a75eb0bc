// types.cpp - GGUF tensor type traits and the fp16 conversion table.
#include <cstring>
#include <stdexcept>
#include <string>

#include "kernels.h"
#include "quant_blocks.h"
#include "scalar_util.h"

namespace ll {

const int8_t kIQ4NLValues[16] = {-127, -104, -83, -65, -49, -35, -22, -10,
                                 1,    13,   25,  38,  53,  69,  89,  113};

namespace {

struct TypeEntry {
  int32_t id;
  TypeTraits traits;
};

const TypeEntry kTypes[] = {
    {TYPE_F32, {"F32", 1, 4, true}},
    {TYPE_F16, {"F16", 1, 2, true}},
    {TYPE_BF16, {"BF16", 1, 2, true}},
    {TYPE_Q4_0, {"Q4_0", 32, sizeof(BlockQ4_0), true}},
    {TYPE_Q4_1, {"Q4_1", 32, sizeof(BlockQ4_1), true}},
    {TYPE_Q5_0, {"Q5_0", 32, sizeof(BlockQ5_0), true}},
    {TYPE_Q5_1, {"Q5_1", 32, sizeof(BlockQ5_1), true}},
    {TYPE_Q8_0, {"Q8_0", 32, sizeof(BlockQ8_0), true}},
    {TYPE_Q8_1, {"Q8_1", 32, sizeof(BlockQ8_1), false}},
    {TYPE_Q2_K, {"Q2_K", 256, sizeof(BlockQ2_K), true}},
    {TYPE_Q3_K, {"Q3_K", 256, sizeof(BlockQ3_K), true}},
    {TYPE_Q4_K, {"Q4_K", 256, sizeof(BlockQ4_K), true}},
    {TYPE_Q5_K, {"Q5_K", 256, sizeof(BlockQ5_K), true}},
    {TYPE_Q6_K, {"Q6_K", 256, sizeof(BlockQ6_K), true}},
    {TYPE_Q8_K, {"Q8_K", 256, sizeof(BlockQ8_K), false}},
    {TYPE_IQ4_NL, {"IQ4_NL", 32, sizeof(BlockIQ4_NL), true}},
    {TYPE_IQ4_XS, {"IQ4_XS", 256, sizeof(BlockIQ4_XS), true}},
};

const TypeEntry* find_type(int32_t type) {
  for (const TypeEntry& e : kTypes) {
    if (e.id == type) return &e;
  }
  return nullptr;
}

// IEEE half -> single, exact for every input (subnormals, inf, NaN payloads),
// the same values numpy's float16 -> float32 cast gives.
float half_bits_to_float(uint16_t h) {
  uint32_t sign = (uint32_t)(h & 0x8000) << 16;
  uint32_t exp = (h >> 10) & 0x1f;
  uint32_t man = h & 0x3ff;
  uint32_t bits;
  if (exp == 0) {
    if (man == 0) {
      bits = sign;
    } else {  // subnormal: renormalise
      int e = -1;
      do {
        man <<= 1;
        e++;
      } while ((man & 0x400) == 0);
      man &= 0x3ff;
      bits = sign | ((uint32_t)(127 - 15 - e) << 23) | (man << 13);
    }
  } else if (exp == 31) {
    bits = sign | 0x7f800000u | (man << 13);
  } else {
    bits = sign | ((exp + 127 - 15) << 23) | (man << 13);
  }
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

struct Fp16Table {
  Fp16Table() {
    for (uint32_t i = 0; i < 65536; i++) g_fp16_to_fp32[i] = half_bits_to_float((uint16_t)i);
  }
};

}  // namespace

float g_fp16_to_fp32[65536];
static Fp16Table g_fp16_table_init;

bool is_known_type(int32_t type) { return find_type(type) != nullptr; }

const TypeTraits& type_traits(int32_t type) {
  const TypeEntry* e = find_type(type);
  if (!e) throw std::invalid_argument("unknown GGML tensor type id " + std::to_string(type));
  return e->traits;
}

size_t row_bytes(int32_t type, int64_t n) {
  const TypeTraits& t = type_traits(type);
  if (n < 0 || n % t.block_size != 0) {
    throw std::invalid_argument(std::string("row of ") + std::to_string(n) + " values is not a multiple of the " +
                                t.name + " block size " + std::to_string(t.block_size));
  }
  return (size_t)(n / t.block_size) * t.type_size;
}

}  // namespace ll
