#pragma once
// Little-endian f16 fields inside ggml blocks (blocks are packed, so no aligned loads).
#include <cstdint>

#include "llmpress/core/half.h"

namespace llmpress::ggml_blocks {

inline void store_f16(uint8_t* dst, float v) {
  const uint16_t h = f32_to_f16(v);
  dst[0] = uint8_t(h & 0xff);
  dst[1] = uint8_t(h >> 8);
}

inline float load_f16(const uint8_t* src) { return f16_to_f32(uint16_t(src[0] | (src[1] << 8))); }

// What ggml computes with after storing a scale: the f16-rounded value.
inline float round_to_f16(float v) { return f16_to_f32(f32_to_f16(v)); }

}  // namespace llmpress::ggml_blocks
