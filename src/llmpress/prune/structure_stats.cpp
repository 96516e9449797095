#include "llmpress/prune/structure_stats.h"

#include "llmpress/core/error.h"
#include "llmpress/core/progress.h"

namespace llmpress {

namespace {

// Wraps a weight for one pass: sums x and x^2 per input channel, then computes what it wraps.
class MomentWeight : public LinearWeight {
 public:
  explicit MomentWeight(std::shared_ptr<LinearWeight> inner) : inner_(std::move(inner)) {}
  at::Tensor forward(const at::Tensor& x) const override {
    const at::Tensor rows = x.reshape({-1, x.size(-1)}).to(at::kDouble);
    if (!sum_.defined()) {
      sum_ = at::zeros({rows.size(1)}, rows.options());
      sum_squares_ = at::zeros_like(sum_);
    }
    sum_ += rows.sum(0);
    sum_squares_ += rows.pow(2).sum(0);
    tokens_ += rows.size(0);
    return inner_->forward(x);
  }
  int64_t in_features() const override { return inner_->in_features(); }
  int64_t out_features() const override { return inner_->out_features(); }
  int64_t storage_bits() const override { return inner_->storage_bits(); }
  at::Tensor dense() const override { return inner_->dense(); }
  std::string kind() const override { return inner_->kind(); }
  WeightState save() const override { return inner_->save(); }
  PruningMask pruning_mask() const override { return inner_->pruning_mask(); }

  ChannelMoments moments() const {
    if (tokens_ == 0) throw Error("structured pruning: no calibration tokens reached the layer");
    return {(sum_ / double(tokens_)).cpu(), (sum_squares_ / double(tokens_)).cpu()};
  }

 private:
  std::shared_ptr<LinearWeight> inner_;
  mutable at::Tensor sum_, sum_squares_;
  mutable int64_t tokens_ = 0;
};

}  // namespace

std::vector<LayerStructureStats> collect_structure_stats(const Transformer& model, const at::Tensor& tokens,
                                                         int64_t batch_samples, bool progress_line) {
  if (tokens.dim() != 2 || tokens.size(0) == 0) throw Error("structured pruning needs calibration windows (--calib)");
  const size_t num_layers = model.layers.size();
  // The wrapped copies share every weight with `model`; only o_proj and down_proj are wrapped.
  std::vector<DecoderLayer> layers = model.layers;
  std::vector<std::shared_ptr<MomentWeight>> attention, mlp;
  for (DecoderLayer& layer : layers) {
    attention.push_back(std::make_shared<MomentWeight>(layer.o_proj.weight));
    mlp.push_back(std::make_shared<MomentWeight>(layer.down_proj.weight));
    layer.o_proj.weight = attention.back();
    layer.down_proj.weight = mlp.back();
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
