#pragma once
// Lookup tables that define ggml's i-quant block formats (values in ggml_iquant_tables.cpp are
// exactly ggml's). Grid entries hold one element per byte, element 0 in the least significant byte.
#include <cstdint>

namespace llmpress::ggml_tables {

extern const uint8_t kIq2SignMask[8];   // bit j of a sign byte <-> element j
extern const uint8_t kIq2Signs[128];    // 7 stored sign bits -> 8 (even parity)
extern const uint64_t kIq2xxsGrid[256];
extern const uint64_t kIq2xsGrid[512];
extern const uint64_t kIq2sGrid[1024];
extern const uint32_t kIq3xxsGrid[256];
extern const uint32_t kIq3sGrid[512];
extern const uint64_t kIq1sGrid[2048];  // int8 values -1, 0, 1
extern const int8_t kIq4nlValues[16];

// Element j (0-based) of a packed grid entry.
inline uint8_t grid_byte(uint64_t entry, int j) { return uint8_t(entry >> (8 * j)); }

}  // namespace llmpress::ggml_tables
