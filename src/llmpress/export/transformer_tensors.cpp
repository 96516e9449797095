#include "llmpress/export/transformer_tensors.h"

namespace llmpress {

std::vector<NamedTensor> transformer_tensors(const Transformer& model) {
  std::vector<NamedTensor> tensors = {{"model.embed_tokens.weight", model.embed_tokens.to(at::kCPU)},
                                      {"model.norm.weight", model.norm.to(at::kCPU)}};
  if (!model.lm_head.weight->dense().is_same(model.embed_tokens))
    tensors.push_back({"lm_head.weight", model.lm_head.weight->dense().to(at::kCPU)});
  for (size_t i = 0; i < model.layers.size(); ++i) {
    const DecoderLayer& layer = model.layers[i];
    const std::string prefix = "model.layers." + std::to_string(i) + ".";
    tensors.push_back({prefix + "input_layernorm.weight", layer.input_norm.to(at::kCPU)});
    tensors.push_back({prefix + "post_attention_layernorm.weight", layer.post_attention_norm.to(at::kCPU)});
    for (const std::string& name : DecoderLayer::linear_names()) {
      const Linear& linear = layer.linear(name);
      tensors.push_back({prefix + name + ".weight", linear.weight->dense().to(at::kCPU, at::kFloat)});
      if (linear.bias.defined()) tensors.push_back({prefix + name + ".bias", linear.bias.to(at::kCPU)});
    }
  }
  return tensors;
}

}  // namespace llmpress
