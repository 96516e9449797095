#include "llmpress/lowrank/rank_allocation.h"

#include <optional>
#include <queue>

#include "llmpress/core/error.h"
#include "llmpress/lowrank/low_rank_weight.h"

namespace llmpress {

std::map<std::string, int64_t> allocate_ranks(const std::vector<LayerSpectrum>& layers, double ratio) {
  if (!(ratio > 0)) throw Error("rank allocation: the ratio must be > 0");
  struct State {
    int64_t rank = 1, max_rank = 0;
    std::vector<double> errors;
    bool dense = false;
  };
  std::vector<State> states(layers.size());
  double budget = 0, spent = 0;
  for (size_t l = 0; l < layers.size(); ++l) {
    const LayerSpectrum& layer = layers[l];
    budget += ratio * double(layer.out) * double(layer.in);
    const at::Tensor e = layer.errors.to(at::kCPU, at::kDouble).contiguous();
    states[l].errors.assign(e.data_ptr<double>(), e.data_ptr<double>() + e.numel());
    // The largest rank whose factors are still smaller than the matrix.
    states[l].max_rank = std::min<int64_t>((layer.out * layer.in - 1) / (layer.out + layer.in), int64_t(e.numel()));
    if (states[l].max_rank < 1) {
      states[l].dense = true;
      spent += double(layer.out) * double(layer.in);
    } else {
      spent += double(factorized_parameters(layer.out, layer.in, 1));
    }
  }
  // The next purchase of each layer: its next component, or going dense after the largest rank.
  struct Step {
    double value;  // error removed per parameter
    double cost;
    size_t layer;
    bool operator<(const Step& other) const { return value < other.value; }
  };
  auto next_step = [&](size_t l) -> std::optional<Step> {
    const State& s = states[l];
    if (s.dense) return std::nullopt;
    const double width = double(layers[l].out + layers[l].in);
    if (s.rank < s.max_rank) return Step{s.errors[size_t(s.rank)] / width, width, l};
    double rest = 0;
    for (size_t i = size_t(s.rank); i < s.errors.size(); ++i) rest += s.errors[i];
    const double cost = double(layers[l].out) * double(layers[l].in) - double(s.rank) * width;
    return Step{rest / cost, cost, l};
  };
  std::priority_queue<Step> queue;
  for (size_t l = 0; l < layers.size(); ++l)
    if (auto step = next_step(l)) queue.push(*step);
  while (!queue.empty()) {
    const Step step = queue.top();
    queue.pop();
    if (spent + step.cost > budget) continue;  // this layer stops growing; cheaper steps may still fit
    spent += step.cost;
    State& s = states[step.layer];
    if (s.rank < s.max_rank) s.rank += 1;
    else s.dense = true;
    if (auto next = next_step(step.layer)) queue.push(*next);
  }
  std::map<std::string, int64_t> ranks;
  for (size_t l = 0; l < layers.size(); ++l) ranks[layers[l].name] = states[l].dense ? 0 : states[l].rank;
  return ranks;
}

namespace {

// Records the spectrum of every layer it sees and leaves the weight as it is.
class SpectrumProbe : public Compressor {
 public:
  explicit SpectrumProbe(const MatrixFactorizer& factorizer) : factorizer_(factorizer) {}
  std::string describe() const override { return "spectrum probe (" + factorizer_.describe() + ")"; }
  StatsRequest needs() const override {
    StatsRequest request = factorizer_.needs();
    request.hessian = true;  // the errors are measured on the calibration inputs
    return request;
  }
  std::shared_ptr<LinearWeight> compress(const std::string& name, const Linear& linear,
                                         const InputStats& stats) override {
    const at::Tensor w = linear.weight->dense().to(at::kDouble);
    const MatrixDecomposition d = factorizer_.decompose(name, w, stats);
    const at::Tensor h = stats.hessian.to(w.device(), at::kDouble);
    const double energy = (at::matmul(w, h) * w).sum().item<double>();
    at::Tensor errors = d.component_errors(h);
    if (energy > 0) errors = errors / energy;
    spectra.push_back({name, w.size(0), w.size(1), errors.to(at::kCPU)});
    return linear.weight;
  }
  std::vector<LayerSpectrum> spectra;

 private:
  const MatrixFactorizer& factorizer_;
};

}  // namespace

std::vector<LayerSpectrum> measure_spectra(const LayerSource& source, const Transformer& shell,
                                           const at::Tensor& tokens, const MatrixFactorizer& factorizer,
                                           EngineOptions options) {
  if (tokens.size(0) == 0) throw Error("rank allocation needs calibration data (--calib FILE)");
  SpectrumProbe probe(factorizer);
  options.work_dir.clear();
  options.resume = false;
  options.measure_errors = false;
  options.on_layer = nullptr;
  compress_sequential(source, shell, tokens, probe, options);
  return std::move(probe.spectra);
}

}  // namespace llmpress
