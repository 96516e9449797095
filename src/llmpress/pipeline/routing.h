#pragma once
// Chooses per linear layer, by name, what a stage does to it: nothing when it is outside the
// stage's targets or matches one of its ignore patterns; otherwise the compressor of the first
// rule whose pattern matches (e.g. --sparsity-for REGEX=S), or the stage's own compressor.
// Patterns are ECMAScript regexes searched in the name without ".weight"
// ("model.layers.3.mlp.down_proj"); empty targets mean every linear layer.
#include <regex>
#include <vector>

#include "llmpress/calib/compressor.h"

namespace llmpress {

class RoutingCompressor : public Compressor {
 public:
  // Throws Error for an invalid pattern, naming `option` ("targets", "--skip", ...).
  RoutingCompressor(std::unique_ptr<Compressor> fallback, const std::vector<std::string>& targets = {},
                    const std::vector<std::string>& ignore = {});
  void add_rule(const std::string& pattern, std::unique_ptr<Compressor> compressor);

  std::string describe() const override;
  StatsRequest needs() const override;
  std::shared_ptr<LinearWeight> compress(const std::string& name, const Linear& linear,
                                         const InputStats& stats) override;
  bool prepares_layers() const override { return fallback_->prepares_layers(); }
  void prepare_layer(int64_t layer_index, DecoderLayer& layer, const ModelConfig& config,
                     const std::vector<InputStats>& group_stats) override {
    fallback_->prepare_layer(layer_index, layer, config, group_stats);
  }
  // Layer training sees only the layers this stage quantized (the skipped ones are not its kind).
  bool trains_layers() const override { return fallback_->trains_layers(); }
  void train_layer(int64_t layer_index, DecoderLayer& layer, const Transformer& shell, const at::Tensor& inputs,
                   const at::Tensor& targets) override {
    fallback_->train_layer(layer_index, layer, shell, inputs, targets);
  }

  bool skips(const std::string& name) const;
  // The compressor that `name` goes to (nullptr when skipped).
  Compressor* route(const std::string& name) const;
  const std::vector<std::string>& skipped() const { return skipped_; }  // names skipped so far

 private:
  struct Pattern {
    std::string text;
    std::regex regex;
  };
  struct Rule {
    Pattern pattern;
    std::unique_ptr<Compressor> compressor;
  };
  std::unique_ptr<Compressor> fallback_;
  std::vector<Pattern> targets_, ignore_;
  std::vector<Rule> rules_;
  std::vector<std::string> skipped_;
};

// Compiles `pattern`; Error naming `option` and the pattern when it is not a valid regex.
std::regex compile_pattern(const std::string& pattern, const std::string& option);

}  // namespace llmpress
