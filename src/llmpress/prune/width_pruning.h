#pragma once
// Width pruning of attention heads and MLP intermediate channels, ranked by FLAP's fluctuation
// score (An et al. 2024): the variance of a unit's input to o_proj / down_proj over the
// calibration tokens times the squared norm of the weight column that reads it — a unit whose
// input barely fluctuates can be replaced by its mean with little loss.
//
// The same number of units goes in every layer, so the result is an ordinary Llama config
// (intermediate_size, num_attention_heads, num_key_value_heads) that every format expresses.
//
// FLAP's bias compensation (adding W[:, removed] * mean(x_removed) as an output bias) is not
// applied: Llama's o_proj and down_proj have no bias, and our config reader, checkpoint check and
// writers do not carry mlp_bias / attention_bias, so a compensated model could not be written.
#include <vector>

#include "llmpress/model/transformer.h"
#include "llmpress/prune/structure_stats.h"

namespace llmpress {

// Var(x_j) * ||W[:, j]||^2 for every input column j of weight [out, in].
at::Tensor fluctuation_scores(const at::Tensor& weight, const ChannelMoments& moments);

// How a number of query heads is taken out of a grouped-query layout, the same in every layer:
// whole kv groups (a kv head with all its query heads) when the number is a multiple of the
// group size, otherwise the same number of query heads from every group.
struct HeadRemovalPlan {
  int64_t groups_removed = 0;          // whole kv groups
  int64_t heads_removed_per_group = 0; // query heads from each remaining group
  int64_t heads_removed(const ModelConfig& config) const;
};
// Throws Error explaining the allowed numbers when `heads` fits neither way.
HeadRemovalPlan plan_head_removal(const ModelConfig& config, int64_t heads);

// Sorted indices of the units kept in one layer.
at::Tensor mlp_channels_to_keep(const DecoderLayer& layer, const LayerStructureStats& stats, int64_t remove);
struct HeadSelection {
  at::Tensor query_heads;  // [kept] int64, sorted
  at::Tensor kv_heads;     // [kept kv] int64, sorted
};
HeadSelection heads_to_keep(const DecoderLayer& layer, const ModelConfig& config, const LayerStructureStats& stats,
                            const HeadRemovalPlan& plan);

// Cut the layer's tensors down to the kept units (gate/up rows and down columns; q/o per query
// head, k/v per kv head, biases too). The caller updates the config.
void shrink_mlp(DecoderLayer& layer, const at::Tensor& keep);
void shrink_attention(DecoderLayer& layer, const ModelConfig& config, const HeadSelection& keep);

// Whole-model passes: the `ratio` of units of every layer with the lowest scores removed
// (rounded to the nearest count allowed), config updated. Return the number removed per layer.
int64_t prune_mlp_channels(Transformer& model, const std::vector<LayerStructureStats>& stats, double ratio);
int64_t prune_attention_heads(Transformer& model, const std::vector<LayerStructureStats>& stats, double ratio);

}  // namespace llmpress
