#pragma once
// Hugging Face GPTQ checkpoints (formats.md 5.1, 5.2): each quantized linear stored as qweight,
// qzeros, scales and g_idx, with quantization_config in config.json, in the layout
// transformers/optimum, AutoGPTQ, GPTQModel and vLLM load; and AWQ checkpoints, the same integer
// grid packed another way.
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "llmpress/export/named_tensor.h"
#include "llmpress/io/model_config.h"
#include "llmpress/quant/int_grid.h"

namespace llmpress {

// The packed tensors of one linear layer under `module` ("model.layers.0.self_attn.q_proj").
// Zeros are stored minus one (checkpoint format "gptq", what every loader expects) unless
// `zero_minus_one` is false (format "gptq_v2", needed when some zero point is 0).
std::vector<NamedTensor> gptq_packed_tensors(const std::string& module, const QuantizedWeight& weight,
                                             bool zero_minus_one);

// Throws Error naming `target` and the layer when the format cannot hold it (5-7 bit grids, sizes
// not multiples of 32).
void check_gptq_layer(const std::string& target, const std::string& name, const IntGridSpec& spec, int64_t out,
                      int64_t in);
// config.json's quantization_config for linears all on `spec`; `meta` adds or overrides fields.
nlohmann::json gptq_quantization_config(const IntGridSpec& spec, bool act_order, bool zero_minus_one,
                                        const nlohmann::json& meta);

// AWQ (GEMM) checkpoints (formats.md 5.3), as AutoAWQ writes them and transformers and vLLM load
// them: qweight [in, out/8] and qzeros [groups, out/8] packed along the output dim, scales
// [groups, out] float16, zero points stored as they are, no g_idx.
std::vector<NamedTensor> awq_packed_tensors(const std::string& module, const QuantizedWeight& weight);
// Throws Error naming `target` and the layer when AWQ cannot hold it (not 4 bits, act-order, sizes
// not multiples of 32).
void check_awq_layer(const std::string& target, const std::string& name, const IntGridSpec& spec, bool act_order,
                     int64_t out, int64_t in);
nlohmann::json awq_quantization_config(const IntGridSpec& spec, const nlohmann::json& meta);

// Writes the folder atomically. `tensors`: every tensor of the model under its Hugging Face name
// (the quantized linears' entries only supply shapes); `linears`: the quantized ones by weight name
// ("...q_proj.weight"), all on one grid. `meta`: extra quantization_config fields (damp_percent,
// true_sequential, static_groups, ...). Other float tensors are stored as float16. Throws Error
// for layers the format cannot hold (in or out features not a multiple of 32, 5-7 bit grids).
void write_gptq_checkpoint(const std::string& dir, const ModelConfig& config, const std::vector<NamedTensor>& tensors,
                           const std::map<std::string, std::shared_ptr<const QuantizedWeight>>& linears,
                           const std::vector<std::string>& tokenizer_files, const nlohmann::json& meta);

}  // namespace llmpress
