#pragma once
#include <functional>
#include <string>
#include <vector>

#include <ATen/ATen.h>

namespace llmpress {

// A tensor to export, under its Hugging Face name (model.layers.0.self_attn.q_proj.weight ...),
// in the Hugging Face layout (q/k half-split RoPE rows). Any dtype, CPU.
//
// A lazy tensor holds only its shape and dtype (a meta tensor) and produces its data when the
// writer reaches it, so a model is written with one tensor in memory at a time.
struct NamedTensor {
  std::string name;
  at::Tensor tensor;                  // the data, or the meta tensor of a lazy one
  std::function<at::Tensor()> load;   // set for lazy tensors

  at::Tensor data() const { return load ? load() : tensor; }
  static NamedTensor lazy(std::string name, const std::vector<int64_t>& shape, at::ScalarType dtype,
                          std::function<at::Tensor()> load) {
    return {std::move(name), at::empty(shape, at::TensorOptions().device(at::kMeta).dtype(dtype)), std::move(load)};
  }
};

}  // namespace llmpress
