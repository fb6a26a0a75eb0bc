// gguf_scan.h - bounds-checked scanning of GGUF string arrays.
//
// A GGUF string is a little-endian uint64 byte count followed by that many
// bytes (no terminator). A vocabulary is an array of up to a few hundred
// thousand of them; scanning it in C++ keeps open_gguf well under a second.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace llamalite {

// Where a string array scan stopped and why.
struct StringScanResult {
  bool ok = false;
  uint64_t end = 0;          // file position just after the last string (when ok)
  uint64_t bad_index = 0;    // index of the first string that does not fit (when !ok)
  uint64_t bad_pos = 0;      // file position of that string's length field
  uint64_t bad_length = 0;   // its declared length (0 if the length field itself is cut off)
  bool length_cut = false;   // true: fewer than 8 bytes were left for the length field
  uint64_t total_bytes = 0;  // sum of all string lengths (when ok)
};

// Scans `count` strings starting at data[pos], never reading at or past
// data[size]. On success fills starts[i] (file position of string i's bytes,
// shape [count]) and lengths[i] (shape [count]). The caller must have checked
// count <= (size - pos) / 8 so the two vectors stay smaller than the file.
StringScanResult scan_gguf_strings(const uint8_t* data, uint64_t size, uint64_t pos,
                                   uint64_t count, std::vector<uint64_t>& starts,
                                   std::vector<uint64_t>& lengths);

}  // namespace llamalite
