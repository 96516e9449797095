#include "llmpress/prune/structure_stats.h"

#include "llmpress/core/error.h"
#include "llmpress/core/progress.h"
#include "llmpress/model/observed_weight.h"

namespace llmpress {

namespace {

// Sums of x and x^2 per input channel over every token a weight reads.
struct ChannelSums {
  at::Tensor sum, sum_squares;
  int64_t tokens = 0;

  void add(const at::Tensor& x) {
    const at::Tensor rows = x.reshape({-1, x.size(-1)}).to(at::kDouble);
    if (!sum.defined()) {
      sum = at::zeros({rows.size(1)}, rows.options());
      sum_squares = at::zeros_like(sum);
    }
    sum += rows.sum(0);
    sum_squares += rows.pow(2).sum(0);
    tokens += rows.size(0);
  }
  ChannelMoments moments() const {
    if (tokens == 0) throw Error("structured pruning: no calibration tokens reached the layer");
    return {(sum / double(tokens)).cpu(), (sum_squares / double(tokens)).cpu()};
  }
};

// `linear` now also adds its inputs to a new ChannelSums, which it returns.
std::shared_ptr<ChannelSums> observe_moments(Linear& linear) {
  auto sums = std::make_shared<ChannelSums>();
  linear.weight = std::make_shared<ObservedWeight>(linear.weight, [sums](const at::Tensor& x) { sums->add(x); });
  return sums;
}

}  // namespace

std::vector<LayerStructureStats> collect_structure_stats(const Transformer& model, const at::Tensor& tokens,
                                                         int64_t batch_samples, bool progress_line) {
  if (tokens.dim() != 2 || tokens.size(0) == 0) throw Error("structured pruning needs calibration windows (--calib)");
  const size_t num_layers = model.layers.size();
  // The wrapped copies share every weight with `model`; only o_proj and down_proj are wrapped.
  std::vector<DecoderLayer> layers = model.layers;
  std::vector<std::shared_ptr<ChannelSums>> attention, mlp;
  for (DecoderLayer& layer : layers) {
    attention.push_back(observe_moments(layer.o_proj));
    mlp.push_back(observe_moments(layer.down_proj));
  }
  std::vector<double> influence(num_layers, 0.0);
  int64_t counted = 0;
  Progress progress("calibrate", tokens.size(0), "tok", progress_line);
  const int64_t batch = std::max<int64_t>(1, batch_samples);
  for (int64_t s = 0; s < tokens.size(0); s += batch) {
    const int64_t n = std::min(batch, tokens.size(0) - s);
    at::Tensor hidden = model.embed(tokens.narrow(0, s, n).to(model.device())).to(at::kFloat);
    for (size_t i = 0; i < num_layers; ++i) {
      const at::Tensor out = layers[i].forward(hidden, model.config, model.rope, 0);
      const at::Tensor cos = at::cosine_similarity(hidden.to(at::kDouble), out.to(at::kDouble), -1);
      influence[i] += (1.0 - cos).sum().item<double>();
      hidden = out;
    }
    counted += hidden.size(0) * hidden.size(1);
    progress.update(s + n, (s + n) * tokens.size(1));
  }
  progress.finish();
  std::vector<LayerStructureStats> stats(num_layers);
  for (size_t i = 0; i < num_layers; ++i) {
    stats[i].block_influence = influence[i] / double(counted);
    stats[i].attention = attention[i]->moments();
    stats[i].mlp = mlp[i]->moments();
  }
  return stats;
}

}  // namespace llmpress
