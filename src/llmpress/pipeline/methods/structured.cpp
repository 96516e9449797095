// Structured pruning: attention heads, MLP channels (FLAP's fluctuation score) and whole decoder
// layers (ShortGPT's block influence). These change the model's shape, so they run on the whole
// loaded model (one calibration pass for the scores) rather than layer by layer.
#include <cmath>

#include "llmpress/core/error.h"
#include "llmpress/core/log.h"
#include "llmpress/pipeline/method.h"
#include "llmpress/prune/layer_removal.h"
#include "llmpress/prune/structure_stats.h"
#include "llmpress/prune/width_pruning.h"

namespace llmpress {

namespace {

void check_structured(const StageOptions& o, ModelState& state) {
  if (state.pruned || state.quantized || state.factorized)
    throw o.error("ratio", o.method() + " changes the model's shape and must come before unstructured pruning, "
                                        "quantization and low-rank stages");
  if (!(o.number("ratio") >= 0 && o.number("ratio") < 1)) throw o.error("ratio", "the ratio must be in [0, 1)");
}

std::string block_influence_table(const std::vector<LayerStructureStats>& stats) {
  std::string table = strprintf("%-6s %16s\n", "layer", "block influence");
  for (size_t i = 0; i < stats.size(); ++i) table += strprintf("%-6zu %16.6f\n", i, stats[i].block_influence);
  return table;
}

std::string transform(Transformer& model, const StageOptions& o, const StageContext& context) {
  const auto stats = collect_structure_stats(model, context.calibration, context.batch_samples, context.progress);
  context.notes->push_back(block_influence_table(stats));
  if (o.method() == "layers") {
    const int64_t count =
        o.integer("count") >= 0 ? o.integer("count") : std::llround(o.number("ratio") * double(model.config.num_layers));
    const std::vector<int64_t> removed = least_influential_layers(stats, count);
    std::string list;
    for (int64_t i : removed) list += (list.empty() ? "" : ", ") + std::to_string(i);
    remove_layers(model, removed);
    return strprintf("removed %lld decoder layers (lowest block influence): %s", (long long)count,
                     list.empty() ? "none" : list.c_str());
  }
  if (o.method() == "channels") {
    const int64_t removed = prune_mlp_channels(model, stats, o.number("ratio"));
    return strprintf("removed %lld MLP channels per layer (FLAP fluctuation, no bias compensation): intermediate %lld",
                     (long long)removed, (long long)model.config.intermediate_size);
  }
  const int64_t kv_before = model.config.num_kv_heads;
  const int64_t removed = prune_attention_heads(model, stats, o.number("ratio"));
  return strprintf("removed %lld query heads and %lld kv heads per layer (FLAP fluctuation, no bias compensation): "
                   "heads %lld, kv heads %lld",
                   (long long)removed, (long long)(kv_before - model.config.num_kv_heads),
                   (long long)model.config.num_heads, (long long)model.config.num_kv_heads);
}

MethodSpec structured_method(const std::string& name, const std::string& summary) {
  MethodSpec m;
  m.name = name;
  m.family = "prune";
  m.summary = summary;
  m.options = {{"ratio", OptionType::Number, 0.2, "fraction of the heads / channels / layers removed"}};
  if (name == "layers") m.options.push_back({"count", OptionType::Integer, -1, "number of layers removed (replaces ratio)"});
  m.needs_calibration = [](const StageOptions&) { return true; };
  m.check = check_structured;
  m.transform = transform;
  return m;
}

const MethodRegistration heads(structured_method("heads", "remove attention heads (FLAP fluctuation score)"));
const MethodRegistration channels(structured_method("channels", "remove MLP channels (FLAP fluctuation score)"));
const MethodRegistration layers(structured_method("layers", "remove whole decoder layers (ShortGPT block influence)"));

}  // namespace

}  // namespace llmpress
