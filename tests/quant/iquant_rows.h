#pragma once
// Deterministic test rows for the i-quant encoders: the same floats on any IEEE-754 machine (integer
// hashing and float additions/multiplications only, no libm), so a checker program built against
// ggml outside the repository and the tests here quantize identical inputs. Row kinds cycle through
// the cases encoders branch on: Gaussian, heavy tails, outliers, per-block scale changes, exact zeros,
// an all-zero block and a block below ggml's GROUP_MAX_EPS.
#include <cstddef>
#include <cstdint>
#include <vector>

namespace llmpress::test {

class RowGenerator {
 public:
  explicit RowGenerator(uint64_t seed) : state_(seed) {}

  uint64_t next() {  // splitmix64
    uint64_t z = (state_ += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  float uniform() { return float(next() >> 40) * (1.0f / 16777216.0f); }  // [0, 1), 24 bits
  float gaussian() {  // Irwin-Hall: four uniforms, unit variance
    return (uniform() + uniform() + uniform() + uniform() - 2.0f) * 1.7320508f;
  }

  // Row `index` of `n` elements (n a multiple of 32); the kind is index % 6.
  std::vector<float> row(int64_t index, int64_t n) {
    std::vector<float> x(static_cast<size_t>(n));
    const int kind = int(index % 6);
    for (int64_t i = 0; i < n; ++i) {
      float g = gaussian();
      float v = 0.02f * g;
      if (kind == 1) v = 0.01f * g * g * g;
      if (kind == 2 && uniform() < 0.01f) v *= 15.0f;
      if (kind == 3) v = (uniform() - 0.5f) * uniform() * uniform() * 0.2f;
      if (kind == 4) v *= float(1 + (i / 32) % 7) * float(1 + (i / 32) % 3) * 0.25f;
      if (kind == 5) {
        if (uniform() < 0.5f) v = 0.0f;
        if (i / 32 == 1) v = 0.0f;                // an all-zero block
        if (i / 32 == 2) v = g * 1e-18f;          // below GROUP_MAX_EPS (1e-15)
      }
      x[static_cast<size_t>(i)] = v;
    }
    return x;
  }
  // An importance vector (imatrix column) of n values in [0.1, 2.1).
  std::vector<float> importance(int64_t n) {
    std::vector<float> w(static_cast<size_t>(n));
    for (float& v : w) v = 0.1f + 2.0f * uniform();
    return w;
  }

 private:
  uint64_t state_;
};

}  // namespace llmpress::test
