#include "llmpress/quant/ggml_compressor.h"

#include "llmpress/core/error.h"
#include "llmpress/quant/ggml_weight.h"

namespace llmpress {

TensorType GgmlCompressor::type_of(const std::string& name) const {
  const auto it = types_.find(name);
  if (it == types_.end()) throw Error(describe() + ": no GGUF type was chosen for " + name);
  return it->second;
}

}  // namespace llmpress
