// dequant.cpp - dequantize_row for every supported type (scalar, generic; F16
// through F16C on x86 when the active ISA is not generic: the same bits).
//
// Each loop mirrors the float32 operation order of gguf.quants.dequantize
// (numpy), so the results are bit-identical; the build uses -ffp-contract=off
// so that no a*b+c is fused into an FMA behind our back.
#include <cstring>
#include <stdexcept>
#include <string>

#include "kernels.h"
#include "quant_blocks.h"
#include "quantize.h"  // quant_avx2::f16_to_f32_row
#include "scalar_util.h"

namespace ll {
namespace {

void deq_f32(const void* src, float* y, int64_t n) { std::memcpy(y, src, (size_t)n * 4); }

void deq_f16(const void* src, float* y, int64_t n) {
  const uint16_t* h = (const uint16_t*)src;
#if defined(__x86_64__) || defined(_M_X64) || defined(__i386__)
  if (active_isa() != ISA::generic) {   // every x86 set but generic has F16C
    quant_avx2::f16_to_f32_row(h, y, n, &fp16_to_fp32);
    return;
  }
#endif
  for (int64_t i = 0; i < n; i++) y[i] = fp16_to_fp32(h[i]);
}

void deq_bf16(const void* src, float* y, int64_t n) {
  const uint16_t* h = (const uint16_t*)src;
  for (int64_t i = 0; i < n; i++) {
    uint32_t bits = (uint32_t)h[i] << 16;
    std::memcpy(&y[i], &bits, 4);
  }
}

void deq_q4_0(const void* src, float* y, int64_t nb) {
  const BlockQ4_0* b = (const BlockQ4_0*)src;
  for (int64_t i = 0; i < nb; i++, y += 32) {
    const float d = fp16_to_fp32(b[i].d);
    for (int j = 0; j < 16; j++) {
      y[j] = d * (float)((b[i].qs[j] & 0xF) - 8);
      y[j + 16] = d * (float)((b[i].qs[j] >> 4) - 8);
    }
  }
}

void deq_q4_1(const void* src, float* y, int64_t nb) {
  const BlockQ4_1* b = (const BlockQ4_1*)src;
  for (int64_t i = 0; i < nb; i++, y += 32) {
    const float d = fp16_to_fp32(b[i].d), m = fp16_to_fp32(b[i].m);
    for (int j = 0; j < 16; j++) {
      y[j] = d * (float)(b[i].qs[j] & 0xF) + m;
      y[j + 16] = d * (float)(b[i].qs[j] >> 4) + m;
    }
  }
}

// The 5th bits of a Q5 block: bit j of the little-endian uint32 qh.
uint32_t load_qh(const uint8_t* qh) {
  uint32_t v;
  std::memcpy(&v, qh, 4);
  return v;
}

void deq_q5_0(const void* src, float* y, int64_t nb) {
  const BlockQ5_0* b = (const BlockQ5_0*)src;
  for (int64_t i = 0; i < nb; i++, y += 32) {
    const float d = fp16_to_fp32(b[i].d);
    const uint32_t qh = load_qh(b[i].qh);
    for (int j = 0; j < 16; j++) {
      int lo = (b[i].qs[j] & 0xF) | (((qh >> j) & 1) << 4);
      int hi = (b[i].qs[j] >> 4) | (((qh >> (j + 16)) & 1) << 4);
      y[j] = d * (float)(lo - 16);
      y[j + 16] = d * (float)(hi - 16);
    }
  }
}

void deq_q5_1(const void* src, float* y, int64_t nb) {
  const BlockQ5_1* b = (const BlockQ5_1*)src;
  for (int64_t i = 0; i < nb; i++, y += 32) {
    const float d = fp16_to_fp32(b[i].d), m = fp16_to_fp32(b[i].m);
    const uint32_t qh = load_qh(b[i].qh);
    for (int j = 0; j < 16; j++) {
      int lo = (b[i].qs[j] & 0xF) | (((qh >> j) & 1) << 4);
      int hi = (b[i].qs[j] >> 4) | (((qh >> (j + 16)) & 1) << 4);
      y[j] = d * (float)lo + m;
      y[j + 16] = d * (float)hi + m;
    }
  }
}

void deq_q8_0(const void* src, float* y, int64_t nb) {
  const BlockQ8_0* b = (const BlockQ8_0*)src;
  for (int64_t i = 0; i < nb; i++, y += 32) {
    const float d = fp16_to_fp32(b[i].d);
    for (int j = 0; j < 32; j++) y[j] = (float)b[i].qs[j] * d;
  }
}

void deq_iq4_nl(const void* src, float* y, int64_t nb) {
  const BlockIQ4_NL* b = (const BlockIQ4_NL*)src;
  for (int64_t i = 0; i < nb; i++, y += 32) {
    const float d = fp16_to_fp32(b[i].d);
    for (int j = 0; j < 16; j++) {
      y[j] = d * (float)kIQ4NLValues[b[i].qs[j] & 0xF];
      y[j + 16] = d * (float)kIQ4NLValues[b[i].qs[j] >> 4];
    }
  }
}

// y = (d * sc) * q - (dmin * m) per 16 values, as gguf computes dl and ml first.
void deq_q2_k(const void* src, float* y, int64_t nb) {
  const BlockQ2_K* b = (const BlockQ2_K*)src;
  for (int64_t i = 0; i < nb; i++, y += QK_K) {
    const float d = fp16_to_fp32(b[i].d), dmin = fp16_to_fp32(b[i].dmin);
    for (int k = 0; k < QK_K; k++) {
      const int half = k / 128, shift = 2 * ((k % 128) / 32), l = k % 32;
      const int q = (b[i].qs[32 * half + l] >> shift) & 3;
      const uint8_t sc = b[i].scales[k / 16];
      const float dl = d * (float)(sc & 0xF), ml = dmin * (float)(sc >> 4);
      y[k] = dl * (float)q - ml;
    }
  }
}

void deq_q3_k(const void* src, float* y, int64_t nb) {
  const BlockQ3_K* b = (const BlockQ3_K*)src;
  int8_t scales[16];
  for (int64_t i = 0; i < nb; i++, y += QK_K) {
    const float d = fp16_to_fp32(b[i].d);
    unpack_q3k_scales(b[i].scales, scales);
    for (int k = 0; k < QK_K; k++) {
      const int half = k / 128, shift = 2 * ((k % 128) / 32), l = k % 32;
      const int lo = (b[i].qs[32 * half + l] >> shift) & 3;
      const int hbit = (b[i].hmask[l] >> (k / 32)) & 1;
      const int q = lo - (hbit ? 0 : 4);
      y[k] = (d * (float)scales[k / 16]) * (float)q;
    }
  }
}

void deq_q4_k(const void* src, float* y, int64_t nb) {
  const BlockQ4_K* b = (const BlockQ4_K*)src;
  for (int64_t i = 0; i < nb; i++, y += QK_K) {
    const float d = fp16_to_fp32(b[i].d), dmin = fp16_to_fp32(b[i].dmin);
    for (int j = 0; j < 8; j++) {
      uint8_t sc, m;
      get_scale_min_k4(j, b[i].scales, &sc, &m);
      const float d1 = d * (float)sc, m1 = dmin * (float)m;
      const uint8_t* q = b[i].qs + 32 * (j / 2);
      const int shift = 4 * (j % 2);
      for (int l = 0; l < 32; l++) y[32 * j + l] = d1 * (float)((q[l] >> shift) & 0xF) - m1;
    }
  }
}

void deq_q5_k(const void* src, float* y, int64_t nb) {
  const BlockQ5_K* b = (const BlockQ5_K*)src;
  for (int64_t i = 0; i < nb; i++, y += QK_K) {
    const float d = fp16_to_fp32(b[i].d), dmin = fp16_to_fp32(b[i].dmin);
    for (int j = 0; j < 8; j++) {
      uint8_t sc, m;
      get_scale_min_k4(j, b[i].scales, &sc, &m);
      const float d1 = d * (float)sc, m1 = dmin * (float)m;
      const uint8_t* q = b[i].qs + 32 * (j / 2);
      const int shift = 4 * (j % 2);
      for (int l = 0; l < 32; l++) {
        const int v = ((q[l] >> shift) & 0xF) | (((b[i].qh[l] >> j) & 1) << 4);
        y[32 * j + l] = d1 * (float)v - m1;
      }
    }
  }
}

void deq_q6_k(const void* src, float* y, int64_t nb) {
  const BlockQ6_K* b = (const BlockQ6_K*)src;
  for (int64_t i = 0; i < nb; i++, y += QK_K) {
    const float d = fp16_to_fp32(b[i].d);
    for (int k = 0; k < QK_K; k++) {
      const int half = k / 128, g = (k % 128) / 32, l = k % 32;
      const uint8_t qlb = b[i].ql[64 * half + 32 * (g % 2) + l];
      const int lo = (g < 2) ? (qlb & 0xF) : (qlb >> 4);
      const int hi = (b[i].qh[32 * half + l] >> (2 * g)) & 3;
      const int q = (lo | (hi << 4)) - 32;
      y[k] = (d * (float)b[i].scales[k / 16]) * (float)q;
    }
  }
}

void deq_iq4_xs(const void* src, float* y, int64_t nb) {
  const BlockIQ4_XS* b = (const BlockIQ4_XS*)src;
  for (int64_t i = 0; i < nb; i++, y += QK_K) {
    const float d = fp16_to_fp32(b[i].d);
    for (int j = 0; j < 8; j++) {
      const int lo = (b[i].scales_l[j / 2] >> (4 * (j % 2))) & 0xF;
      const int hi = (b[i].scales_h >> (2 * j)) & 3;
      const float dl = d * (float)((lo | (hi << 4)) - 32);
      const uint8_t* q = b[i].qs + 16 * j;
      for (int l = 0; l < 16; l++) {
        y[32 * j + l] = dl * (float)kIQ4NLValues[q[l] & 0xF];
        y[32 * j + l + 16] = dl * (float)kIQ4NLValues[q[l] >> 4];
      }
    }
  }
}

}  // namespace

void dequantize_row(int32_t type, const void* src, float* dst, int64_t n) {
  const TypeTraits& t = type_traits(type);
  if (n < 0 || n % t.block_size != 0) {
    throw std::invalid_argument(std::string("dequantize: ") + std::to_string(n) +
                                " values is not a multiple of the " + t.name + " block size " +
                                std::to_string(t.block_size));
  }
  const int64_t nb = n / t.block_size;
  switch (type) {
    case TYPE_F32: return deq_f32(src, dst, n);
    case TYPE_F16: return deq_f16(src, dst, n);
    case TYPE_BF16: return deq_bf16(src, dst, n);
    case TYPE_Q4_0: return deq_q4_0(src, dst, nb);
    case TYPE_Q4_1: return deq_q4_1(src, dst, nb);
    case TYPE_Q5_0: return deq_q5_0(src, dst, nb);
    case TYPE_Q5_1: return deq_q5_1(src, dst, nb);
    case TYPE_Q8_0: return deq_q8_0(src, dst, nb);
    case TYPE_Q2_K: return deq_q2_k(src, dst, nb);
    case TYPE_Q3_K: return deq_q3_k(src, dst, nb);
    case TYPE_Q4_K: return deq_q4_k(src, dst, nb);
    case TYPE_Q5_K: return deq_q5_k(src, dst, nb);
    case TYPE_Q6_K: return deq_q6_k(src, dst, nb);
    case TYPE_IQ4_NL: return deq_iq4_nl(src, dst, nb);
    case TYPE_IQ4_XS: return deq_iq4_xs(src, dst, nb);
    default:
      throw std::invalid_argument(std::string("dequantize: type ") + t.name +
                                  " is not supported for dequantization");
  }
}

}  // namespace ll
