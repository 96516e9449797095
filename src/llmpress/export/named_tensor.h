#pragma once
#include <string>

#include <ATen/ATen.h>

namespace llmpress {

// A tensor to export, under its Hugging Face name (model.layers.0.self_attn.q_proj.weight ...),
// in the Hugging Face layout (q/k half-split RoPE rows). Any float dtype, CPU.
struct NamedTensor {
  std::string name;
  at::Tensor tensor;
};

}  // namespace llmpress
