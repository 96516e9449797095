#pragma once
// safetensors reader: one file, or a sharded checkpoint through model.safetensors.index.json.
#include <map>
#include <string>
#include <vector>

#include "llmpress/io/tensor_data.h"

namespace llmpress {

struct SafetensorsFile {
  std::vector<RawTensor> tensors;  // in data-offset order
  std::map<std::string, std::string> metadata;  // __metadata__
};

// Reads and fully validates one .safetensors file (dtypes F32, F16, BF16); tensors point into its mapping.
SafetensorsFile read_safetensors(const std::string& path);

// Reads every shard named by an index file (model.safetensors.index.json); checks that each tensor the
// weight_map names is in the shard it names and that no tensor appears twice.
std::map<std::string, RawTensor> read_safetensors_index(const std::string& index_path);

}  // namespace llmpress
