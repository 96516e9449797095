#pragma once
// The factorized Hugging Face layout: a low-rank linear NAME is stored as NAME.weight_u [out, r]
// and NAME.weight_v [r, in] (W = weight_u @ weight_v) instead of NAME.weight; Transformer::load
// reads the pair back as a LowRankWeight.
#include <string>
#include <vector>

#include "llmpress/export/safetensors_writer.h"

namespace llmpress {

// Adds layer `name` ("model.layers.0.self_attn.q_proj") as factors: a placeholder NAME.weight of
// the product's shape for the writer's checks, replaced by the two factors (CPU float32).
// Throws when the factors are not [out, r] and [r, in].
void add_factorized_layer(const std::string& name, const at::Tensor& u, const at::Tensor& v,
                          std::vector<NamedTensor>& tensors, HfCheckpointOptions& options);

}  // namespace llmpress
