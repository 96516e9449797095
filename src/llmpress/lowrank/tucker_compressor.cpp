#include "llmpress/lowrank/tucker_compressor.h"

#include <cmath>
#include <cstdio>

#include "llmpress/core/error.h"
#include "llmpress/lowrank/tucker_weight.h"

namespace llmpress {

namespace {

bool ends_with(const std::string& s, const std::string& tail) {
  return s.size() >= tail.size() && s.compare(s.size() - tail.size(), tail.size(), tail) == 0;
}

double tucker_parameters(const std::vector<int64_t>& shape, const std::vector<int64_t>& ranks) {
  double count = 1;
  for (int64_t r : ranks) count *= double(r);
  for (size_t n = 0; n < shape.size(); ++n) count += double(shape[n]) * double(ranks[n]);
  return count;
}

}  // namespace

std::vector<int64_t> tucker_ranks_for_budget(const std::vector<int64_t>& shape, int64_t full_mode, double budget) {
  std::vector<int64_t> best;
  for (int step = 1000; step >= 1; --step) {  // fractions 1.000, 0.999, ... of the cut modes
    std::vector<int64_t> ranks(shape.size());
    for (size_t n = 0; n < shape.size(); ++n)
      ranks[n] = int64_t(n) == full_mode ? shape[n]
                                         : std::max<int64_t>(1, int64_t(std::floor(double(shape[n]) * step / 1000.0)));
    if (tucker_parameters(shape, ranks) <= budget) return ranks;
  }
  return best;
}

TuckerCompressor::TuckerCompressor(double ratio, int64_t head_dim, int64_t max_iterations)
    : ratio_(ratio), head_dim_(head_dim), max_iterations_(max_iterations) {
  if (!(ratio_ > 0)) throw Error("tucker: --ratio must be > 0");
  if (head_dim_ < 1) throw Error("tucker: the model's head_dim must be >= 1");
}

std::string TuckerCompressor::describe() const {
  char text[80];
  std::snprintf(text, sizeof text, "tucker (attention heads) ratio %g hooi %lld", ratio_, (long long)max_iterations_);
  return text;
}

std::shared_ptr<LinearWeight> TuckerCompressor::compress(const std::string& name, const Linear& linear,
                                                         const InputStats&) {
  const int64_t out = linear.weight->out_features(), in = linear.weight->in_features();
  std::vector<int64_t> shape;
  int64_t head_mode = 0;
  if (ends_with(name, "q_proj") || ends_with(name, "k_proj") || ends_with(name, "v_proj")) {
    if (out % head_dim_ != 0) return linear.weight;
    shape = {out / head_dim_, head_dim_, in};
    head_mode = 0;
  } else if (ends_with(name, "o_proj")) {
    if (in % head_dim_ != 0) return linear.weight;
    shape = {out, in / head_dim_, head_dim_};
    head_mode = 1;
  } else {
    return linear.weight;
  }
  const std::vector<int64_t> ranks = tucker_ranks_for_budget(shape, head_mode, ratio_ * double(out) * double(in));
  if (ranks.empty()) return linear.weight;
  if (tucker_parameters(shape, ranks) >= double(out) * double(in)) return linear.weight;
  const at::Tensor w = linear.weight->dense();
  TuckerOptions options;
  options.ranks = ranks;
  options.max_iterations = max_iterations_;
  return std::make_shared<TuckerWeight>(tucker_hooi(w.to(at::kDouble).reshape(shape), options), out, in, w.device());
}

std::map<std::string, at::Tensor> TuckerCompressor::save(const LinearWeight& weight) const {
  const auto* tucker = dynamic_cast<const TuckerWeight*>(&weight);
  if (!tucker) return Compressor::save(weight);
  std::map<std::string, at::Tensor> state = {
      {"core", tucker->decomposition().core},
      {"matrix_shape", at::tensor({tucker->out_features(), tucker->in_features()}, at::kLong)}};
  for (size_t n = 0; n < tucker->decomposition().factors.size(); ++n)
    state["factor" + std::to_string(n)] = tucker->decomposition().factors[n];
  return state;
}

std::shared_ptr<LinearWeight> TuckerCompressor::restore(const std::string& kind,
                                                        const std::map<std::string, at::Tensor>& state) const {
  if (kind != "tucker") return Compressor::restore(kind, state);
  if (!state.count("core") || !state.count("matrix_shape") || state.at("matrix_shape").numel() != 2)
    throw Error("tucker: saved layer state is incomplete");
  TuckerDecomposition d;
  d.core = state.at("core");
  for (int64_t n = 0; n < d.core.dim(); ++n) {
    const auto it = state.find("factor" + std::to_string(n));
    if (it == state.end()) throw Error("tucker: saved layer state lacks factor " + std::to_string(n));
    d.factors.push_back(it->second);
  }
  const at::Tensor shape = state.at("matrix_shape").to(at::kCPU);
  return std::make_shared<TuckerWeight>(d, shape[0].item<int64_t>(), shape[1].item<int64_t>(), d.core.device());
}

}  // namespace llmpress
