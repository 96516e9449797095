#pragma once
// The Hugging Face tensors a Llama-family model must provide to be exported, checked once for all writers.
#include <map>
#include <string>
#include <vector>

#include "llmpress/export/named_tensor.h"
#include "llmpress/io/model_config.h"

namespace llmpress {

// head_dim, or hidden/heads when the config leaves it 0.
int64_t export_head_dim(const ModelConfig& config);

// Checks that every tensor the config needs is present with the right shape and that nothing
// unknown is left over (rotary_emb.inv_freq buffers are dropped; lm_head.weight is dropped when
// tied). Throws one Error naming `target`, the missing tensors and the first wrong shape.
// Returns the tensors to write by name (lazy ones stay lazy).
std::map<std::string, NamedTensor> check_export_tensors(const ModelConfig& config,
                                                        const std::vector<NamedTensor>& tensors,
                                                        const std::string& target);

}  // namespace llmpress
