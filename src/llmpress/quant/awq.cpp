#include "llmpress/quant/awq.h"

#include <cmath>
#include <cstdio>

#include "llmpress/calib/engine.h"
#include "llmpress/core/error.h"

namespace llmpress {

namespace {

bool grouped_query_attention(const ModelConfig& config) {
  return config.num_kv_heads > 0 && config.num_kv_heads != config.num_heads;
}

// The o_proj group can only be scaled when each v_proj output channel feeds exactly one o_proj input.
bool can_fold(size_t group, const ModelConfig& config) { return group != 1 || !grouped_query_attention(config); }

// Scales of all rows of `linear` by `factor` [out] (weight rows and bias).
void scale_rows(Linear& linear, const at::Tensor& factor) {
  const at::Tensor w = linear.weight->dense();
  linear.weight = std::make_shared<DenseWeight>(w * factor.to(w.device(), w.scalar_type()).unsqueeze(1));
  if (linear.bias.defined()) linear.bias = linear.bias * factor.to(linear.bias.device(), linear.bias.scalar_type());
}

void scale_columns(Linear& linear, const at::Tensor& factor) {
  const at::Tensor w = linear.weight->dense();
  linear.weight = std::make_shared<DenseWeight>(w * factor.to(w.device(), w.scalar_type()).unsqueeze(0));
}

}  // namespace

void fold_awq_scales(DecoderLayer& layer, size_t group, const at::Tensor& scales, const ModelConfig& config) {
  if (!can_fold(group, config))
    throw Error("awq: o_proj's inputs cannot be scaled under grouped-query attention");
  const at::Tensor inverse = 1.0 / scales;
  switch (group) {
    case 0: layer.input_norm = layer.input_norm * inverse.to(layer.input_norm.options()); break;
    case 1: scale_rows(layer.v_proj, inverse); break;
    case 2: layer.post_attention_norm = layer.post_attention_norm * inverse.to(layer.post_attention_norm.options()); break;
    case 3: scale_rows(layer.up_proj, inverse); break;
    default: throw Error("awq: no linear group " + std::to_string(group));
  }
  for (const std::string& name : linear_groups()[group]) scale_columns(layer.linear(name), scales);
}

StatsRequest AwqCompressor::needs() const {
  StatsRequest request = inner_->needs();
  request.hessian = true;
  request.input_norms = true;
  return request;
}

void AwqCompressor::prepare_layer(int64_t layer_index, DecoderLayer& layer, const ModelConfig& config,
                                  const std::vector<InputStats>& group_stats) {
  const std::string prefix = "model.layers." + std::to_string(layer_index) + ".";
  for (size_t group = 0; group < group_stats.size(); ++group) {
    if (!can_fold(group, config)) continue;
    const at::Tensor scales = search_scales(prefix, group, layer, group_stats[group]);
    if (scales.defined()) fold_awq_scales(layer, group, scales, config);
  }
}

at::Tensor AwqCompressor::search_scales(const std::string& prefix, size_t group, const DecoderLayer& layer,
                                        const InputStats& stats) {
  if (!stats.hessian.defined() || !stats.mean_abs.defined())
    throw Error("awq: " + prefix + "*: no activation statistics were collected");
  const at::Tensor h = stats.hessian;
  const at::Tensor x_mean = stats.mean_abs.to(h.device(), at::kDouble);

  // Output error of the group quantized after scaling by s, in the original coordinates.
  auto error_with = [&](const at::Tensor& s) {
    double total = 0;
    for (const std::string& name : linear_groups()[group]) {
      const at::Tensor w = layer.linear(name).weight->dense().to(at::kDouble);
      const at::Tensor scaled = (w * s.unsqueeze(0)).to(at::kFloat);
      const at::Tensor q = fake_quantize_(prefix + name, scaled).to(h.device(), at::kDouble) / s.unsqueeze(0);
      const at::Tensor d = q - w;
      total += (at::matmul(d, h) * d).sum().item<double>();
    }
    return total;
  };

  double best_error = INFINITY, best_alpha = 0;
  at::Tensor best_scales;
  for (int i = 0; i < options_.grid_points; ++i) {
    const double alpha = double(i) / options_.grid_points;
    at::Tensor s = x_mean.pow(alpha).clamp_min(1e-4);
    s = s / (s.max() * s.min()).sqrt();
    const double error = error_with(s);
    if (std::isfinite(error) && error < best_error) {
      best_error = error;
      best_alpha = alpha;
      best_scales = s;
    }
  }
  alphas_.push_back(best_alpha);
  if (best_alpha == 0) return {};  // s = 1: nothing to fold
  return best_scales.to(at::kFloat);
}

}  // namespace llmpress
