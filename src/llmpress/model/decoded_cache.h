#pragma once
// Decoded (dequantized) copies of quantized weights, kept within a byte budget. Quantized kinds
// stay quantized in memory (about the file's size) and are decoded when a forward pass needs them;
// a model whose decoded weights fit the budget is decoded once, a bigger one is decoded layer by
// layer on every pass instead of being held as float32 (least recently used copies are dropped).
#include <ATen/ATen.h>

#include <cstdint>
#include <functional>

namespace llmpress {

class DecodedCache {
 public:
  // The decoded copy of `owner` as `dtype` on `device`; `decode` makes it (a float tensor on any
  // device) when it is not cached.
  static at::Tensor get(const void* owner, const at::Device& device, at::ScalarType dtype,
                        const std::function<at::Tensor()>& decode);
  // Drops every copy of `owner` (its destructor calls this).
  static void forget(const void* owner);
  // 0 disables caching. Default: LLMPRESS_DECODE_CACHE_MIB from the environment, else 256 MiB.
  static void set_budget_bytes(int64_t bytes);
  static int64_t budget_bytes();
  static int64_t cached_bytes();
};

}  // namespace llmpress
