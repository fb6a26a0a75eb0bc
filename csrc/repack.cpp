// repack.cpp - the x8 weight layout (kernels.h, quant_blocks.h): packing ggml
// rows into groups of 8 interleaved rows (and, for the 32-value types, sets of
// 4 groups interleaved block by block), and back.
#include <cstring>
#include <stdexcept>
#include <string>

#include "kernels.h"
#include "quant_blocks.h"

namespace ll {

namespace {

// Where the fields of one ggml block lie, and how big its parts are.
struct X8Layout {
  size_t block;     // bytes of one ggml block
  int m_off;        // offset of the fp16 minimum, or -1
  int qh_off;       // offset of the 32 fifth bits, or -1
  int qs_off;       // offset of the quants
  int qs_bytes;     // 16 (4-bit) or 32 (8-bit)
};

bool x8_layout(int32_t type, X8Layout* L) {
  switch (type) {
    case TYPE_Q4_0: *L = {sizeof(BlockQ4_0), -1, -1, 2, 16}; return true;
    case TYPE_Q4_1: *L = {sizeof(BlockQ4_1), 2, -1, 4, 16}; return true;
    case TYPE_Q5_0: *L = {sizeof(BlockQ5_0), -1, 2, 6, 16}; return true;
    case TYPE_Q5_1: *L = {sizeof(BlockQ5_1), 2, 4, 8, 16}; return true;
    case TYPE_Q8_0: *L = {sizeof(BlockQ8_0), -1, -1, 2, 32}; return true;
    case TYPE_IQ4_NL: *L = {sizeof(BlockIQ4_NL), -1, -1, 2, 16}; return true;
    default: return false;
  }
}

// Offsets inside one x8 block: d[8], then m[8], then qh[8] (u32), then qs.
struct X8Offsets {
  size_t m, qh, qs;
};

X8Offsets x8_offsets(const X8Layout& L) {
  X8Offsets o;
  size_t at = 16;
  o.m = at;
  if (L.m_off >= 0) at += 16;
  o.qh = at;
  if (L.qh_off >= 0) at += 32;
  o.qs = at;
  return o;
}

uint32_t get_u32(const uint8_t* p) {
  uint32_t v;
  std::memcpy(&v, p, 4);
  return v;
}

const X8Layout& checked_layout(int32_t type, X8Layout* L) {
  if (!x8_layout(type, L)) {
    throw std::invalid_argument(std::string("x8 layout: ") + type_traits(type).name + " has no x8 layout");
  }
  return *L;
}

// One x8 block from the block b of rows[0..7] (each a pointer to a ggml row).
void pack_block(const X8Layout& L, const X8Offsets& o, const uint8_t* const* rows, int64_t b, uint8_t* dst) {
  const int nvec = L.qs_bytes / 4;
  for (int j = 0; j < 8; j++) {
    const uint8_t* src = rows[j] + (size_t)b * L.block;
    std::memcpy(dst + 2 * j, src, 2);                                   // d
    if (L.m_off >= 0) std::memcpy(dst + o.m + 2 * j, src + L.m_off, 2);  // m
    for (int t = 0; t < nvec; t++) std::memcpy(dst + o.qs + 32 * t + 4 * j, src + L.qs_off + 4 * t, 4);
  }
  if (L.qh_off >= 0) {
    uint32_t qh[8] = {};
    for (int j = 0; j < 8; j++) {
      const uint32_t h = get_u32(rows[j] + (size_t)b * L.block + L.qh_off);
      for (int t = 0; t < 4; t++) {   // 4 bits at a time: bits 4t..4t+3 -> 4j..4j+3
        qh[2 * t] |= ((h >> (4 * t)) & 0xFu) << (4 * j);
        qh[2 * t + 1] |= ((h >> (16 + 4 * t)) & 0xFu) << (4 * j);
      }
    }
    std::memcpy(dst + o.qh, qh, sizeof(qh));
  }
}

// Row j's ggml block back from one x8 block.
void unpack_block(const X8Layout& L, const X8Offsets& o, const uint8_t* src, int j, uint8_t* dst) {
  const int nvec = L.qs_bytes / 4;
  std::memcpy(dst, src + 2 * j, 2);
  if (L.m_off >= 0) std::memcpy(dst + L.m_off, src + o.m + 2 * j, 2);
  for (int t = 0; t < nvec; t++) std::memcpy(dst + L.qs_off + 4 * t, src + o.qs + 32 * t + 4 * j, 4);
  if (L.qh_off >= 0) {
    uint32_t h = 0;
    for (int t = 0; t < 4; t++) {
      const uint32_t lo = get_u32(src + o.qh + 4 * (2 * t)), hi = get_u32(src + o.qh + 4 * (2 * t + 1));
      h |= ((lo >> (4 * j)) & 0xFu) << (4 * t);
      h |= ((hi >> (4 * j)) & 0xFu) << (16 + 4 * t);
    }
    std::memcpy(dst + L.qh_off, &h, 4);
  }
}

// --- K-quants: Q4_K and Q6_K (256-value super-blocks) ------------------------------

// Q4_K's 8 scales and 8 mins (6 bits each) from / into its 12 packed bytes.
void q4k_scales_get(const uint8_t* q, uint8_t* sc, uint8_t* mn) {
  for (int s = 0; s < 4; s++) {
    sc[s] = q[s] & 63;
    mn[s] = q[s + 4] & 63;
    sc[s + 4] = (uint8_t)((q[s + 8] & 0xF) | ((q[s] >> 6) << 4));
    mn[s + 4] = (uint8_t)((q[s + 8] >> 4) | ((q[s + 4] >> 6) << 4));
  }
}
void q4k_scales_put(const uint8_t* sc, const uint8_t* mn, uint8_t* q) {
  for (int s = 0; s < 4; s++) {
    q[s] = (uint8_t)(sc[s] | ((sc[s + 4] >> 4) << 6));
    q[s + 4] = (uint8_t)(mn[s] | ((mn[s + 4] >> 4) << 6));
    q[s + 8] = (uint8_t)((sc[s + 4] & 0xF) | ((mn[s + 4] & 0xF) << 4));
  }
}

void pack_q4k_block(const uint8_t* const* rows, int64_t b, uint8_t* dst) {
  BlockQ4_Kx8* o = (BlockQ4_Kx8*)dst;
  std::memset(o->sh, 0, sizeof(o->sh));
  for (int j = 0; j < 8; j++) {
    const BlockQ4_K* x = (const BlockQ4_K*)rows[j] + b;
    o->d[j] = x->d;
    o->dmin[j] = x->dmin;
    uint8_t sc[8], mn[8];
    q4k_scales_get(x->scales, sc, mn);
    for (int s = 0; s < 8; s++) {
      o->sl[8 * s + j] = (uint8_t)((sc[s] & 0xF) | ((mn[s] & 0xF) << 4));
      o->sh[s] |= (uint32_t)((sc[s] >> 4) | ((mn[s] >> 4) << 2)) << (4 * j);
    }
    for (int i = 0; i < 4; i++)
      for (int t = 0; t < 8; t++) std::memcpy(o->qs + 32 * (8 * i + t) + 4 * j, x->qs + 32 * i + 4 * t, 4);
  }
}

void unpack_q4k_block(const uint8_t* src, int j, uint8_t* dst) {
  const BlockQ4_Kx8* p = (const BlockQ4_Kx8*)src;
  BlockQ4_K* x = (BlockQ4_K*)dst;
  x->d = p->d[j];
  x->dmin = p->dmin[j];
  uint8_t sc[8], mn[8];
  for (int s = 0; s < 8; s++) {
    const uint32_t h = (p->sh[s] >> (4 * j)) & 0xF;
    sc[s] = (uint8_t)((p->sl[8 * s + j] & 0xF) | ((h & 3) << 4));
    mn[s] = (uint8_t)((p->sl[8 * s + j] >> 4) | ((h >> 2) << 4));
  }
  q4k_scales_put(sc, mn, x->scales);
  for (int i = 0; i < 4; i++)
    for (int t = 0; t < 8; t++) std::memcpy(x->qs + 32 * i + 4 * t, p->qs + 32 * (8 * i + t) + 4 * j, 4);
}

// Offsets of ql vector v and qh vector v in BlockQ6_Kx8::q (quant_blocks.h).
size_t q6k_ql_off(int v) { return 96 * (size_t)(8 * (v / 16) + v % 8) + 32 * ((v / 8) % 2); }
size_t q6k_qh_off(int v) { return 96 * (size_t)v + 64; }

void pack_q6k_block(const uint8_t* const* rows, int64_t b, uint8_t* dst) {
  BlockQ6_Kx8* o = (BlockQ6_Kx8*)dst;
  for (int j = 0; j < 8; j++) {
    const BlockQ6_K* x = (const BlockQ6_K*)rows[j] + b;
    o->d[j] = x->d;
    for (int s = 0; s < 16; s++) o->scales[8 * s + j] = x->scales[s];
    for (int v = 0; v < 32; v++) std::memcpy(o->q + q6k_ql_off(v) + 4 * j, x->ql + 4 * v, 4);
    for (int v = 0; v < 16; v++) std::memcpy(o->q + q6k_qh_off(v) + 4 * j, x->qh + 4 * v, 4);
  }
}

void unpack_q6k_block(const uint8_t* src, int j, uint8_t* dst) {
  const BlockQ6_Kx8* p = (const BlockQ6_Kx8*)src;
  BlockQ6_K* x = (BlockQ6_K*)dst;
  x->d = p->d[j];
  for (int s = 0; s < 16; s++) x->scales[s] = p->scales[8 * s + j];
  for (int v = 0; v < 32; v++) std::memcpy(x->ql + 4 * v, p->q + q6k_ql_off(v) + 4 * j, 4);
  for (int v = 0; v < 16; v++) std::memcpy(x->qh + 4 * v, p->q + q6k_qh_off(v) + 4 * j, 4);
}

bool is_x8_kquant(int32_t type) { return type == TYPE_Q4_K || type == TYPE_Q6_K; }

// What both directions need to walk a tensor of `type` with rows of K values.
struct X8Plan {
  X8Layout L{};      // the 32-value types' field offsets (unused for the K-quants)
  X8Offsets o{};
  int64_t nb = 0;    // blocks per row
  size_t bs = 0;     // bytes per ggml block
  size_t rb = 0;     // bytes per row
};

X8Plan x8_plan(int32_t type, int64_t K) {
  X8Plan p;
  if (!is_x8_kquant(type)) {
    checked_layout(type, &p.L);
    p.o = x8_offsets(p.L);
  }
  const TypeTraits& t = type_traits(type);
  p.nb = K / t.block_size;
  p.bs = t.type_size;
  p.rb = (size_t)p.nb * p.bs;
  return p;
}

}  // namespace

bool x8_supported(int32_t type, int64_t N, int64_t K) {
  X8Layout L;
  if (N <= 0 || N % 8 != 0 || K <= 0) return false;
  if (is_x8_kquant(type)) return K % QK_K == 0;
  return x8_layout(type, &L) && K % QK32 == 0;
}

int x8_set_groups(int32_t type) {
  switch (type) {
    case TYPE_Q4_0: case TYPE_Q4_1: case TYPE_Q5_0: case TYPE_Q5_1: case TYPE_Q8_0: case TYPE_IQ4_NL: return 4;
    default: return 1;
  }
}

namespace {

// Where row group g of a packed tensor of N rows lies: its block b at base + b * step
// bytes (kernels.h, "Sets").
struct GroupPlace {
  size_t base, step;
};

GroupPlace group_place(int32_t type, int64_t N, const X8Plan& p, int64_t g) {
  const int64_t S = x8_set_groups(type);
  const size_t bs8 = 8 * p.bs, gs = (size_t)p.nb * bs8;
  const int64_t whole = (N / 8) / S * S;   // groups in whole sets; the rest are the tail
  if (S > 1 && g < whole) return {(size_t)(g / S) * S * gs + (size_t)(g % S) * bs8, S * bs8};
  return {(size_t)g * gs, bs8};
}

}  // namespace

void pack_x8(int32_t type, const uint8_t* src, int64_t N, int64_t K, uint8_t* dst, int64_t g0, int64_t g1) {
  const X8Plan p = x8_plan(type, K);
  const int64_t nb = p.nb, S = x8_set_groups(type);
  if (g0 < 0 || g1 > N / 8 || g0 % S != 0 || (g1 % S != 0 && g1 != N / 8)) {
    throw std::invalid_argument("pack_x8: groups [" + std::to_string(g0) + ", " + std::to_string(g1) +
                                ") are not whole sets of " + std::to_string(S) + " of " + std::to_string(N / 8));
  }
  const size_t rb = p.rb;
  for (int64_t g = g0; g < g1; g++) {
    const uint8_t* rows[8];
    for (int j = 0; j < 8; j++) rows[j] = src + (size_t)(8 * g + j) * rb;
    const GroupPlace at = group_place(type, N, p, g);
    for (int64_t b = 0; b < nb; b++) {
      uint8_t* blk = dst + at.base + (size_t)b * at.step;
      if (type == TYPE_Q4_K) pack_q4k_block(rows, b, blk);
      else if (type == TYPE_Q6_K) pack_q6k_block(rows, b, blk);
      else pack_block(p.L, p.o, rows, b, blk);
    }
  }
}

void unpack_x8_rows(int32_t type, const uint8_t* packed, int64_t N, int64_t K, int64_t n0, int64_t n1, uint8_t* dst) {
  const X8Plan p = x8_plan(type, K);
  const int64_t nb = p.nb;
  const size_t bs = p.bs, rb = p.rb;
  for (int64_t n = n0; n < n1; n++) {
    uint8_t* out = dst + (size_t)(n - n0) * rb;
    const int j = (int)(n % 8);
    const GroupPlace at = group_place(type, N, p, n / 8);
    for (int64_t b = 0; b < nb; b++) {
      const uint8_t* blk = packed + at.base + (size_t)b * at.step;
      if (type == TYPE_Q4_K) unpack_q4k_block(blk, j, out + (size_t)b * bs);
      else if (type == TYPE_Q6_K) unpack_q6k_block(blk, j, out + (size_t)b * bs);
      else unpack_block(p.L, p.o, blk, j, out + (size_t)b * bs);
    }
  }
}

}  // namespace ll
