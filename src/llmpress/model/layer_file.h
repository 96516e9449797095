#pragma once
// A decoder layer saved to one work file (io/tensor_file.h): its norms, biases and every linear
// weight's WeightState, whatever its kind. Resume points and stage outputs are layer files.
#include <string>

#include "llmpress/model/transformer.h"

namespace llmpress {

void save_layer_file(const std::string& path, const DecoderLayer& layer);
// Error naming the file for a missing or corrupt file or a weight kind that is not registered.
DecoderLayer load_layer_file(const std::string& path, const at::Device& device);

}  // namespace llmpress
