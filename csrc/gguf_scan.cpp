// gguf_scan.cpp - bounds-checked scanning of GGUF string arrays (see gguf_scan.h).
#include "gguf_scan.h"

namespace llamalite {

// Little-endian uint64 at p (portable: no alignment or host-endianness assumption).
static uint64_t read_u64_le(const uint8_t* p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}

StringScanResult scan_gguf_strings(const uint8_t* data, uint64_t size, uint64_t pos,
                                   uint64_t count, std::vector<uint64_t>& starts,
                                   std::vector<uint64_t>& lengths) {
  StringScanResult r;
  if (pos > size || count > (size - pos) / 8) {  // each string needs its 8-byte length
    r.bad_index = 0;
    r.bad_pos = pos;
    r.length_cut = true;
    return r;
  }
  starts.resize(count);   // [count]
  lengths.resize(count);  // [count]
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
    starts[i] = pos + 8;
    lengths[i] = len;
    pos += 8 + len;
    total += len;  // <= size, cannot overflow
  }
  r.ok = true;
  r.end = pos;
  r.total_bytes = total;
  return r;
}

}  // namespace llamalite
