#pragma once
// Little-endian fields inside ggml blocks (blocks are packed, so no aligned loads).
#include <cstdint>

#include <cstring>

#include "llmpress/core/half.h"

namespace llmpress::ggml_blocks {

inline uint16_t load_u16(const uint8_t* p) { return uint16_t(p[0] | (p[1] << 8)); }
inline uint32_t load_u32(const uint8_t* p) {
  return uint32_t(p[0]) | uint32_t(p[1]) << 8 | uint32_t(p[2]) << 16 | uint32_t(p[3]) << 24;
}
inline void store_u16(uint8_t* p, uint16_t v) {
  p[0] = uint8_t(v & 0xff);
  p[1] = uint8_t(v >> 8);
}
inline void store_u32(uint8_t* p, uint32_t v) {
  for (int i = 0; i < 4; ++i) p[i] = uint8_t(v >> (8 * i));
}

inline void store_f16(uint8_t* dst, float v) {
  const uint16_t h = f32_to_f16(v);
  dst[0] = uint8_t(h & 0xff);
  dst[1] = uint8_t(h >> 8);
}

inline float load_f16(const uint8_t* src) { return f16_to_f32(uint16_t(src[0] | (src[1] << 8))); }

// What ggml computes with after storing a scale: the f16-rounded value.
inline float round_to_f16(float v) { return f16_to_f32(f32_to_f16(v)); }

// Q3_K 6-bit signed sub-block scales (stored +32) in 12 bytes: low nibbles in bytes 0-7
// (sub-blocks 8-15 in the high nibbles), high 2 bits in bytes 8-11.
inline void pack_q3_scales(const int* codes, uint8_t* scales) {
  std::memset(scales, 0, 12);
  for (int j = 0; j < 16; ++j) {
    const int l = codes[j];
    if (j < 8)
      scales[j] = uint8_t(l & 0x0f);
    else
      scales[j - 8] |= uint8_t((l & 0x0f) << 4);
    scales[j % 4 + 8] |= uint8_t((l >> 4) << (2 * (j / 4)));
  }
}
inline int unpack_q3_scale(const uint8_t* scales, int j) {
  const int low = j < 8 ? scales[j] & 0x0f : scales[j - 8] >> 4;
  const int high = (scales[8 + j % 4] >> (2 * (j / 4))) & 3;
  return (low | (high << 4)) - 32;
}

// Q4_K/Q5_K 6-bit scale and min of sub-block j (0..7) in 12 bytes (formats.md 2.3). Written with
// ggml's exact byte operations: codes >= 64 (possible only in the weighted Q4_K path) spill as in ggml.
inline void pack_scale_min_k4(int j, uint8_t ls, uint8_t lm, uint8_t* scales) {
  if (j < 4) {
    scales[j] = ls;
    scales[j + 4] = lm;
  } else {
    scales[j + 4] = uint8_t((ls & 0x0f) | ((lm & 0x0f) << 4));
    scales[j - 4] |= uint8_t((ls >> 4) << 6);
    scales[j] |= uint8_t((lm >> 4) << 6);
  }
}
inline void unpack_scale_min_k4(int j, const uint8_t* q, uint8_t& sc, uint8_t& m) {
  if (j < 4) {
    sc = q[j] & 63;
    m = q[j + 4] & 63;
  } else {
    sc = uint8_t((q[j + 4] & 0x0f) | ((q[j - 4] >> 6) << 4));
    m = uint8_t((q[j + 4] >> 4) | ((q[j] >> 6) << 4));
  }
}

}  // namespace llmpress::ggml_blocks
