#include "llmpress/quant/ggml_compressor.h"

#include "llmpress/core/error.h"
#include "llmpress/quant/ggml_weight.h"

namespace llmpress {

TensorType GgmlCompressor::type_of(const std::string& name) const {
  const auto it = types_.find(name);
  if (it == types_.end()) throw Error(describe() + ": no GGUF type was chosen for " + name);
  return it->second;
}

std::map<std::string, at::Tensor> GgmlCompressor::save(const LinearWeight& weight) const {
  if (const auto* ggml = dynamic_cast<const GgmlWeight*>(&weight)) return ggml->state();
  return Compressor::save(weight);
}

std::shared_ptr<LinearWeight> GgmlCompressor::restore(const std::string& kind,
                                                      const std::map<std::string, at::Tensor>& state) const {
  if (kind == "ggml") return GgmlWeight::from_state(state);
  return Compressor::restore(kind, state);
}

}  // namespace llmpress
