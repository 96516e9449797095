#pragma once
#include <cstdint>
#include <cstring>

namespace llmpress {

// IEEE binary16 -> binary32, exact for every input (subnormals, inf, NaN).
inline float f16_to_f32(uint16_t h) {
  const uint32_t sign = uint32_t(h & 0x8000) << 16;
  uint32_t exp = (h >> 10) & 0x1f;
  uint32_t mant = h & 0x3ff;
  uint32_t bits;
  if (exp == 0) {
    if (mant == 0) {
      bits = sign;
    } else {  // subnormal: renormalize
      int e = -1;
      do { ++e; mant <<= 1; } while ((mant & 0x400) == 0);
      bits = sign | uint32_t(127 - 15 - e) << 23 | (mant & 0x3ff) << 13;
    }
  } else if (exp == 31) {
    bits = sign | 0x7f800000u | mant << 13;
  } else {
    bits = sign | (exp + 127 - 15) << 23 | mant << 13;
  }
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

// binary32 -> binary16, round to nearest even (overflow -> inf, NaN -> quiet NaN), as ggml does.
inline uint16_t f32_to_f16(float f) {
  uint32_t x;
  std::memcpy(&x, &f, 4);
  const uint16_t sign = (x >> 16) & 0x8000;
  const uint32_t ax = x & 0x7fffffff;
  if (ax > 0x7f800000u) return sign | 0x7e00;  // NaN
  if (ax >= 0x477ff000u) return sign | 0x7c00;  // rounds to >= 65520 -> inf
  if (ax < 0x38800000u) {                        // result is subnormal or zero
    float a;
    std::memcpy(&a, &ax, 4);
    // Adding 0.5 (2^-1) aligns the f16 subnormal LSB (2^-24) with the f32 LSB range, and the FPU rounds to even.
    const float shifted = a + 0.5f;
    uint32_t s;
    std::memcpy(&s, &shifted, 4);
    return sign | uint16_t(s - 0x3f000000u);
  }
  const uint32_t mant_odd = (ax >> 13) & 1;
  const uint32_t rounded = ax + 0xc8000fffu + mant_odd;  // rebias exponent (-112 << 23) and round to even
  return sign | uint16_t(rounded >> 13);
}

inline float bf16_to_f32(uint16_t h) {
  const uint32_t bits = uint32_t(h) << 16;
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

inline uint16_t f32_to_bf16(float f) {
  uint32_t x;
  std::memcpy(&x, &f, 4);
  if ((x & 0x7fffffff) > 0x7f800000u) return uint16_t((x >> 16) | 0x40);
  return uint16_t((x + 0x7fff + ((x >> 16) & 1)) >> 16);
}

}  // namespace llmpress
