#pragma once
// Base of the compressors that produce GgmlWeight (GGUF block types): the type each linear layer
// gets, chosen up front for the whole model (e.g. by a llama-quantize mix).
#include <map>
#include <string>

#include "llmpress/calib/compressor.h"
#include "llmpress/io/tensor_data.h"

namespace llmpress {

class GgmlCompressor : public Compressor {
 public:
  // types: by Hugging Face linear name without ".weight" ("model.layers.3.mlp.down_proj").
  explicit GgmlCompressor(std::map<std::string, TensorType> types) : types_(std::move(types)) {}

 protected:
  TensorType type_of(const std::string& name) const;  // throws Error for a layer without a type
  const std::map<std::string, TensorType>& types() const { return types_; }

 private:
  std::map<std::string, TensorType> types_;
};

}  // namespace llmpress
