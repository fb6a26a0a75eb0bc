// gguf_scan.cpp - bounds-checked scanning of GGUF string arrays (see gguf_scan.h).
#include "gguf_scan.h"

#include <cstring>

namespace ll {

// Little-endian uint64 at p (portable: no alignment or host-endianness assumption).
static uint64_t read_u64_le(const uint8_t* p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}

StringScanResult scan_gguf_strings(const uint8_t* data, uint64_t size, uint64_t pos,
                                   uint64_t count) {
  StringScanResult r;
  if (pos > size || count > (size - pos) / 8) {  // each string needs its 8-byte length
    r.bad_pos = pos;
    r.length_cut = true;
    return r;
  }
  uint64_t total = 0;
  for (uint64_t i = 0; i < count; ++i) {
    if (size - pos < 8) {  // pos <= size holds on every iteration
      r.bad_index = i;
      r.bad_pos = pos;
      r.length_cut = true;
      return r;
    }
    const uint64_t len = read_u64_le(data + pos);
    if (len > size - pos - 8) {  // overflow-safe form of pos + 8 + len > size
      r.bad_index = i;
      r.bad_pos = pos;
      r.bad_length = len;
      return r;
    }
    pos += 8 + len;
    total += len;  // <= size: cannot overflow
  }
  r.ok = true;
  r.end = pos;
  r.total_bytes = total;
  return r;
}

bool gather_gguf_strings(const uint8_t* data, uint64_t size, uint64_t pos, uint64_t count,
                         int64_t* offsets, uint8_t* blob, uint64_t blob_size) {
  uint64_t at = 0;  // bytes written to blob
  for (uint64_t i = 0; i < count; ++i) {
    if (pos > size || size - pos < 8) return false;
    const uint64_t len = read_u64_le(data + pos);
    if (len > size - pos - 8 || len > blob_size - at) return false;
    offsets[i] = static_cast<int64_t>(at);
    if (len) std::memcpy(blob + at, data + pos + 8, len);
    at += len;
    pos += 8 + len;
  }
  offsets[count] = static_cast<int64_t>(at);
  return at == blob_size;
}

}  // namespace ll
