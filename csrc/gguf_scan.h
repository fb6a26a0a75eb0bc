// gguf_scan.h - bounds-checked scanning of GGUF string arrays.
//
// A GGUF string is a little-endian uint64 byte count followed by that many
// bytes (no terminator). A vocabulary is an array of up to a few hundred
// thousand of them; scanning it in C++ keeps open_gguf in milliseconds.
// Memory: the caller allocates count + 1 offsets and total_bytes of blob, which
// together never exceed the bytes the array occupies in the file plus 8.
#pragma once

#include <cstdint>

namespace ll {

// Where a string array scan stopped and why.
struct StringScanResult {
  bool ok = false;
  uint64_t end = 0;          // file position just after the last string (when ok)
  uint64_t total_bytes = 0;  // sum of all string lengths (when ok)
  uint64_t bad_index = 0;    // index of the first string that does not fit (when !ok)
  uint64_t bad_pos = 0;      // file position of that string's length field
  uint64_t bad_length = 0;   // its declared length (0 if the length field itself is cut off)
  bool length_cut = false;   // true: fewer than 8 bytes were left for the length field
};

// Validates `count` strings starting at data[pos] without reading at or past
// data[size] and without allocating: the first pass of a string array read.
StringScanResult scan_gguf_strings(const uint8_t* data, uint64_t size, uint64_t pos,
                                   uint64_t count);

// Second pass: copies the strings into blob (capacity blob_size bytes) and writes
// offsets[0..count] (shape [count + 1]) so string i is blob[offsets[i]:offsets[i+1]].
// Re-checks every bound, so a file that changed since the scan cannot overflow
// blob; returns false in that case.
bool gather_gguf_strings(const uint8_t* data, uint64_t size, uint64_t pos, uint64_t count,
                         int64_t* offsets, uint8_t* blob, uint64_t blob_size);

}  // namespace ll
