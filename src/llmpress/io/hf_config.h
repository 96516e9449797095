#pragma once
// Hugging Face config.json <-> ModelConfig (Llama 2/3, Mistral, Qwen2, TinyLlama, SmolLM).
#include <string>

#include <nlohmann/json.hpp>

#include "llmpress/io/model_config.h"

namespace llmpress {

// Parses a config.json object; `source` (the file path) prefixes every error. The result is validated.
ModelConfig parse_hf_config(const nlohmann::json& json, const std::string& source);
// Reads and parses PATH (a config.json file).
ModelConfig read_hf_config(const std::string& path);
// Writes v4-style keys (rope_theta, rope_scaling, torch_dtype) that both transformers v4 and v5 read.
nlohmann::json to_hf_config(const ModelConfig& config);

}  // namespace llmpress
