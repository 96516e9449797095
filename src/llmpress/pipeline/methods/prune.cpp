// Unstructured and N:M pruning: magnitude, wanda, sparsegpt (which can also quantize the kept
// weights in the same pass). The removed weights become a pruning mask (SparseWeight) that later
// stages keep.
#include <regex>

#include "llmpress/core/error.h"
#include "llmpress/io/checkpoint.h"
#include "llmpress/pipeline/method.h"
#include "llmpress/pipeline/routing.h"
#include "llmpress/prune/magnitude.h"
#include "llmpress/prune/sparsegpt.h"
#include "llmpress/prune/wanda.h"

namespace llmpress {

namespace {

std::vector<OptionSpec> target_options() {
  return {{"sparsity", OptionType::Number, 0.5, "fraction of the weights removed, in [0, 1)"},
          {"pattern", OptionType::String, nullptr, "N:M instead of a fraction: at most N nonzeros in every M inputs"},
          {"sparsity_for", OptionType::StringList, nullptr,
           "REGEX=FRACTION or REGEX=N:M: another target for the matching layers (first match wins)"}};
}

SparsityTarget parse_target(const std::string& text, const StageOptions& o, const std::string& option) {
  try {
    if (text.find(':') != std::string::npos) return SparsityTarget::pattern(text);
    size_t used = 0;
    const double fraction = std::stod(text, &used);
    if (used != text.size()) throw Error("'" + text + "' is not a fraction or N:M");
    SparsityTarget t = SparsityTarget::unstructured(fraction);
    t.check();
    return t;
  } catch (const Error& e) {
    throw o.error(option, e.what());
  } catch (const std::exception&) {
    throw o.error(option, "'" + text + "' is not a fraction or N:M");
  }
}

SparsityTarget target_of(const StageOptions& o) {
  if (!o.text("pattern").empty()) {
    if (o.given("sparsity")) throw o.error("pattern", "give either a sparsity or an N:M pattern, not both");
    return parse_target(o.text("pattern"), o, "pattern");
  }
  SparsityTarget t = SparsityTarget::unstructured(o.number("sparsity"));
  try {
    t.check();
  } catch (const Error& e) {
    throw o.error("sparsity", e.what());
  }
  return t;
}

struct TargetRule {
  std::string pattern;
  SparsityTarget target;
};

std::vector<TargetRule> target_rules(const StageOptions& o) {
  std::vector<TargetRule> rules;
  for (const std::string& text : o.list("sparsity_for")) {
    const size_t eq = text.rfind('=');
    if (eq == std::string::npos || eq == 0 || eq + 1 == text.size())
      throw o.error("sparsity_for", "'" + text + "': expected REGEX=FRACTION or REGEX=N:M (e.g. 'mlp\\.=0.6')");
    compile_pattern(text.substr(0, eq), "sparsity_for");
    rules.push_back({text.substr(0, eq), parse_target(text.substr(eq + 1), o, "sparsity_for")});
  }
  return rules;
}

MaskScope scope_of(const StageOptions& o, const std::string& fallback) {
  const std::string scope = o.text("scope").empty() ? fallback : o.text("scope");
  if (scope == "row") return MaskScope::Row;
  if (scope == "layer") return MaskScope::Layer;
  throw o.error("scope", "scope '" + scope + "': use row or layer" +
                             std::string(o.method() == "magnitude" ? " (or global)" : ""));
}

void check_prune(const StageOptions& o, ModelState& state) {
  if (state.quantized)
    throw o.error("sparsity", o.method() + " prunes float weights and cannot follow a quantization stage; prune "
                                           "first, then quantize (the quantizers keep the zeros)");
  if (state.factorized) throw o.error("sparsity", o.method() + " cannot follow a low-rank stage (prune first)");
  target_of(o);
  target_rules(o);
  if (o.method() == "magnitude" && o.text("scope") == "global") {
    if (target_of(o).semi_structured()) throw o.error("scope", "scope global does not apply to an N:M pattern");
    if (!o.list("sparsity_for").empty())
      throw o.error("scope", "scope global uses one threshold; it does not combine with sparsity_for");
  } else if (o.method() != "sparsegpt") {
    scope_of(o, "layer");
  }
  if (o.method() == "sparsegpt") {
    if (o.integer("bits") != 0) {
      IntGridSpec spec;
      spec.bits = int(o.integer("bits"));
      spec.group_size = o.integer("group");
      try {
        spec.check();
      } catch (const Error& e) {
        throw o.error("bits", e.what());
      }
      state.quantized = true;
      state.ggml = false;
    }
  }
  state.pruned = true;
}

// The compressor for one target (the stage's, or a sparsity_for rule's).
std::unique_ptr<Compressor> make_pruner(const StageOptions& o, const StageContext& context,
                                        const SparsityTarget& target) {
  if (o.method() == "magnitude") {
    if (o.text("scope") == "global") {
      // One threshold over every targeted linear layer (one float32 copy of them, layer by layer).
      std::vector<at::Tensor> weights;
      for (int64_t i = 0; i < context.config.num_layers; ++i) {
        const DecoderLayer layer = context.source.load_layer(i, at::kCPU);
        for (const std::string& name : DecoderLayer::linear_names()) weights.push_back(layer.linear(name).weight->dense());
      }
      return std::make_unique<MagnitudeCompressor>(global_magnitude_threshold(weights, target.sparsity));
    }
    return std::make_unique<MagnitudeCompressor>(target, scope_of(o, "layer"));
  }
  if (o.method() == "wanda") return std::make_unique<WandaCompressor>(target, scope_of(o, "row"));
  SparseGptOptions options;
  options.target = target;
  options.percdamp = o.number("damp");
  options.block_size = o.integer("block");
  options.keep_zeros = o.flag("keep_zeros");
  if (o.integer("bits") != 0) {
    IntGridSpec grid;
    grid.bits = int(o.integer("bits"));
    grid.group_size = o.integer("group");
    grid.symmetric = o.flag("sym");
    options.grid = grid;
  }
  return std::make_unique<SparseGptCompressor>(options);
}

std::unique_ptr<Compressor> make_stage(const StageOptions& o, const StageContext& context) {
  const std::vector<TargetRule> rules = target_rules(o);
  // An N:M pattern must fit every layer it applies to: fail before any work.
  for (int64_t i = 0; i < context.config.num_layers; ++i)
    for (const std::string& name : DecoderLayer::linear_names()) {
      const std::string full = "model.layers." + std::to_string(i) + "." + name;
      SparsityTarget target = target_of(o);
      for (const TargetRule& rule : rules)
        if (std::regex_search(full, std::regex(rule.pattern))) {
          target = rule.target;
          break;
        }
      check_pattern_fits(target, linear_shape(context.config, name).second, full);
    }
  auto router = std::make_unique<RoutingCompressor>(make_pruner(o, context, target_of(o)));
  for (const TargetRule& rule : rules) router->add_rule(rule.pattern, make_pruner(o, context, rule.target));
  return router;
}

MethodSpec prune_method(const std::string& name, const std::string& summary) {
  MethodSpec m;
  m.name = name;
  m.family = "prune";
  m.summary = summary;
  m.options = target_options();
  if (name != "sparsegpt") {
    m.options.push_back({"scope", OptionType::String, nullptr,
                         name == "magnitude" ? "where the fraction is counted: layer (default), row or global"
                                             : "where the fraction is counted: row (default) or layer"});
  } else {
    m.options.push_back({"bits", OptionType::Integer, 0, "also quantize the kept weights onto a B-bit grid (0: no)"});
    m.options.push_back({"group", OptionType::Integer, 128, "joint quantization: input columns per group"});
    m.options.push_back({"sym", OptionType::Boolean, false, "joint quantization: symmetric grid"});
    m.options.push_back({"keep_zeros", OptionType::Boolean, false, "weights that are already zero stay zero"});
    m.options.push_back({"damp", OptionType::Number, 0.01, "dampening, fraction of the mean Hessian diagonal"});
    m.options.push_back({"block", OptionType::Integer, 128, "columns whose mask is chosen together"});
  }
  m.needs_calibration = [name](const StageOptions&) { return name != "magnitude"; };
  m.check = check_prune;
  m.compressor = make_stage;
  return m;
}

const MethodRegistration magnitude(prune_method("magnitude", "remove the weights of smallest |w|"));
const MethodRegistration wanda(prune_method("wanda", "Wanda: |w| times the input channel's norm, per output row"));
const MethodRegistration sparsegpt(
    prune_method("sparsegpt", "SparseGPT: OBS mask per block with the inverse-Hessian update of the kept weights"));

}  // namespace

}  // namespace llmpress
