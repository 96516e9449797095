#include "llmpress/lowrank/tucker_compressor.h"

#include <cmath>
#include <cstdio>

#include "llmpress/core/error.h"
#include "llmpress/lowrank/tensor_ops.h"
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

std::vector<int64_t> tucker_ranks_for_budget(const at::Tensor& tensor, int64_t full_mode, double budget) {
  if (tensor.dim() != 3 || full_mode < 0 || full_mode > 2) throw Error("tucker: ranks need a 3-way tensor");
  const std::vector<int64_t> shape = tensor.sizes().vec();
  // Squared singular values of the two cut modes' unfoldings, as suffix sums: tail[n][r] is what
  // truncating mode n to rank r discards. Their sum bounds the HOSVD error (De Lathauwer et al.).
  std::vector<std::vector<double>> tail(3);
  for (int64_t n = 0; n < 3; ++n) {
    if (n == full_mode) continue;
    const at::Tensor s2 = at::linalg_svdvals(unfold_mode(tensor.to(at::kDouble), n)).pow(2).to(at::kCPU).contiguous();
    std::vector<double> values(s2.data_ptr<double>(), s2.data_ptr<double>() + s2.numel());
    values.resize(size_t(shape[size_t(n)]), 0.0);
    tail[size_t(n)].assign(values.size() + 1, 0.0);
    for (size_t i = values.size(); i-- > 0;) tail[size_t(n)][i] = tail[size_t(n)][i + 1] + values[i];
  }
  const int64_t a = full_mode == 0 ? 1 : 0, b = full_mode == 2 ? 1 : 2;  // the two cut modes
  std::vector<int64_t> best;
  double best_bound = 0;
  for (int64_t ra = 1; ra <= shape[size_t(a)]; ++ra)
    for (int64_t rb = 1; rb <= shape[size_t(b)]; ++rb) {
      std::vector<int64_t> ranks = shape;
      ranks[size_t(a)] = ra;
      ranks[size_t(b)] = rb;
      if (tucker_parameters(shape, ranks) > budget) break;  // grows with rb
      const double bound = tail[size_t(a)][size_t(ra)] + tail[size_t(b)][size_t(rb)];
      if (best.empty() || bound < best_bound) {
        best = ranks;
        best_bound = bound;
      }
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
  const at::Tensor w = linear.weight->dense();
  const at::Tensor tensor = w.to(at::kDouble).reshape(shape);
  const std::vector<int64_t> ranks = tucker_ranks_for_budget(tensor, head_mode, ratio_ * double(out) * double(in));
  if (ranks.empty() || tucker_parameters(shape, ranks) >= double(out) * double(in)) return linear.weight;
  TuckerOptions options;
  options.ranks = ranks;
  options.max_iterations = max_iterations_;
  return std::make_shared<TuckerWeight>(tucker_hooi(tensor, options), out, in, w.device());
}

}  // namespace llmpress
