#include "llmpress/prune/layer_removal.h"

#include <algorithm>
#include <numeric>
#include <set>

#include "llmpress/core/error.h"

namespace llmpress {

std::vector<int64_t> least_influential_layers(const std::vector<LayerStructureStats>& stats, int64_t count) {
  const int64_t layers = int64_t(stats.size());
  if (count < 0 || count >= layers)
    throw Error("cannot remove " + std::to_string(count) + " of " + std::to_string(layers) +
                " decoder layers (at least one must stay)");
  std::vector<int64_t> order(size_t(layers), 0);
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) {
    return stats[size_t(a)].block_influence < stats[size_t(b)].block_influence;
  });
  order.resize(size_t(count));
  std::sort(order.begin(), order.end());
  return order;
}

void remove_layers(Transformer& model, const std::vector<int64_t>& indices) {
  const std::set<int64_t> removed(indices.begin(), indices.end());
  if (removed.size() != indices.size()) throw Error("remove_layers: repeated layer index");
  for (int64_t i : removed)
    if (i < 0 || i >= int64_t(model.layers.size())) throw Error("remove_layers: no layer " + std::to_string(i));
  if (removed.size() >= model.layers.size()) throw Error("remove_layers: at least one decoder layer must stay");
  std::vector<DecoderLayer> kept;
  for (size_t i = 0; i < model.layers.size(); ++i)
    if (!removed.count(int64_t(i))) kept.push_back(std::move(model.layers[i]));
  model.layers = std::move(kept);
  model.config.num_layers = int64_t(model.layers.size());
}

}  // namespace llmpress
