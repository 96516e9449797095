#include "llmpress/prune/width_pruning.h"

#include <cmath>

#include "llmpress/core/error.h"

namespace llmpress {

at::Tensor fluctuation_scores(const at::Tensor& weight, const ChannelMoments& moments) {
  const at::Tensor column_norms = weight.to(at::kDouble).pow(2).sum(0);
  if (column_norms.size(0) != moments.mean.size(0))
    throw Error("fluctuation scores: the statistics do not match the weight's input size");
  return moments.variance().to(column_norms.device()) * column_norms;
}

int64_t HeadRemovalPlan::heads_removed(const ModelConfig& config) const {
  const int64_t group = config.num_heads / config.num_kv_heads;
  return groups_removed * group + heads_removed_per_group * (config.num_kv_heads - groups_removed);
}

HeadRemovalPlan plan_head_removal(const ModelConfig& config, int64_t heads) {
  const int64_t group = config.num_heads / config.num_kv_heads;
  HeadRemovalPlan plan;
  if (heads < 0 || heads >= config.num_heads)
    throw Error("cannot remove " + std::to_string(heads) + " of " + std::to_string(config.num_heads) +
                " attention heads per layer (at least one must stay)");
  if (heads % group == 0) {
    plan.groups_removed = heads / group;
  } else if (heads % config.num_kv_heads == 0) {
    plan.heads_removed_per_group = heads / config.num_kv_heads;
  } else {
    throw Error("removing " + std::to_string(heads) + " of " + std::to_string(config.num_heads) +
                " query heads per layer would leave grouped-query attention irregular (" +
                std::to_string(config.num_kv_heads) + " kv heads of " + std::to_string(group) +
                " query heads each): remove a multiple of " + std::to_string(group) + " (whole kv groups) or of " +
                std::to_string(config.num_kv_heads) + " (the same number from every group); change --ratio");
  }
  return plan;
}

at::Tensor mlp_channels_to_keep(const DecoderLayer& layer, const LayerStructureStats& stats, int64_t remove) {
  const at::Tensor scores = fluctuation_scores(layer.down_proj.weight->dense(), stats.mlp);
  const int64_t keep = scores.size(0) - remove;
  if (remove < 0 || keep < 1) throw Error("cannot remove " + std::to_string(remove) + " MLP channels of " +
                                          std::to_string(scores.size(0)));
  const at::Tensor order = std::get<1>(at::sort(scores.cpu(), /*stable=*/true, 0, /*descending=*/true));
  return std::get<0>(at::sort(order.narrow(0, 0, keep)));
}

HeadSelection heads_to_keep(const DecoderLayer& layer, const ModelConfig& config, const LayerStructureStats& stats,
                            const HeadRemovalPlan& plan) {
  const int64_t heads = config.num_heads, kv_heads = config.num_kv_heads, group = heads / kv_heads;
  const at::Tensor per_head =
      fluctuation_scores(layer.o_proj.weight->dense(), stats.attention).cpu().view({heads, -1}).sum(1);
  const at::Tensor by_group = per_head.view({kv_heads, group});  // row g: query heads of kv head g
  auto highest = [](const at::Tensor& scores, int64_t keep) {
    return std::get<1>(at::sort(scores, /*stable=*/true, 0, /*descending=*/true)).narrow(0, 0, keep);
  };
  const at::Tensor kept_groups = std::get<0>(at::sort(highest(by_group.sum(1), kv_heads - plan.groups_removed)));
  std::vector<at::Tensor> query;
  for (int64_t i = 0; i < kept_groups.size(0); ++i) {
    const int64_t g = kept_groups[i].item<int64_t>();
    const at::Tensor within = std::get<0>(at::sort(highest(by_group[g], group - plan.heads_removed_per_group)));
    query.push_back(within + g * group);
  }
  return {at::cat(query), kept_groups};
}

namespace {

// Rows (dim 0) or columns (dim 1) of a linear weight, and its bias when rows are selected.
void select_linear(Linear& linear, const at::Tensor& index, int64_t dim) {
  const at::Tensor w = linear.weight->dense();
  linear.weight = std::make_shared<DenseWeight>(w.index_select(dim, index.to(w.device())));
  if (dim == 0 && linear.bias.defined()) linear.bias = linear.bias.index_select(0, index.to(w.device()));
}

// Indices of the head_dim rows of each selected head.
at::Tensor head_rows(const at::Tensor& heads, int64_t head_dim) {
  return (heads.unsqueeze(1) * head_dim + at::arange(head_dim, heads.options()).unsqueeze(0)).reshape({-1});
}

}  // namespace

void shrink_mlp(DecoderLayer& layer, const at::Tensor& keep) {
  select_linear(layer.gate_proj, keep, 0);
  select_linear(layer.up_proj, keep, 0);
  select_linear(layer.down_proj, keep, 1);
}

void shrink_attention(DecoderLayer& layer, const ModelConfig& config, const HeadSelection& keep) {
  const at::Tensor q_rows = head_rows(keep.query_heads, config.head_dim);
  const at::Tensor kv_rows = head_rows(keep.kv_heads, config.head_dim);
  select_linear(layer.q_proj, q_rows, 0);
  select_linear(layer.k_proj, kv_rows, 0);
  select_linear(layer.v_proj, kv_rows, 0);
  select_linear(layer.o_proj, q_rows, 1);
}

namespace {

void check_ratio(double ratio) {
  if (!(ratio >= 0 && ratio < 1)) throw Error("--ratio " + std::to_string(ratio) + ": need a fraction in [0, 1)");
}

}  // namespace

int64_t prune_mlp_channels(Transformer& model, const std::vector<LayerStructureStats>& stats, double ratio) {
  check_ratio(ratio);
  if (stats.size() != model.layers.size()) throw Error("prune_mlp_channels: statistics for a different model");
  const int64_t remove = std::llround(ratio * double(model.config.intermediate_size));
  for (size_t i = 0; i < model.layers.size(); ++i)
    shrink_mlp(model.layers[i], mlp_channels_to_keep(model.layers[i], stats[i], remove));
  model.config.intermediate_size -= remove;
  return remove;
}

int64_t prune_attention_heads(Transformer& model, const std::vector<LayerStructureStats>& stats, double ratio) {
  check_ratio(ratio);
  if (stats.size() != model.layers.size()) throw Error("prune_attention_heads: statistics for a different model");
  ModelConfig& config = model.config;
  const HeadRemovalPlan plan = plan_head_removal(config, std::llround(ratio * double(config.num_heads)));
  for (size_t i = 0; i < model.layers.size(); ++i)
    shrink_attention(model.layers[i], config, heads_to_keep(model.layers[i], config, stats[i], plan));
  const int64_t removed = plan.heads_removed(config);
  config.num_heads -= removed;
  config.num_kv_heads -= plan.groups_removed;
  return removed;
}

}  // namespace llmpress
