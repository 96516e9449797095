#include "llmpress/quant/awq.h"

#include <cmath>
#include <cstdio>

#include "llmpress/calib/engine.h"
#include "llmpress/core/error.h"
#include "llmpress/core/log.h"
#include "llmpress/model/sparse_weight.h"

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

// Zero-pads the columns of m [rows, cols] to groups * group and views it as [rows, groups, group].
at::Tensor by_group(const at::Tensor& m, int64_t groups, int64_t group) {
  const int64_t pad = groups * group - m.size(1);
  return (pad ? at::constant_pad_nd(m, {0, pad}) : m).reshape({m.size(0), groups, group});
}

}  // namespace

bool awq_clips(const std::string& name) {
  const std::string last = name.substr(name.rfind('.') + 1);
  return last != "q_proj" && last != "k_proj";
}

AwqClip search_awq_clip(const std::string& name, const at::Tensor& weight, const at::Tensor& hessian,
                        const FakeQuantizer& fake_quantize, const AwqOptions& options) {
  const at::Tensor w = weight.to(at::kFloat);
  const int64_t rows = w.size(0), cols = w.size(1);
  if (hessian.dim() != 2 || hessian.size(0) != cols || hessian.size(1) != cols)
    throw Error("awq: " + name + ": the Hessian's shape does not match the weight's inputs");
  const int64_t group = options.clip_group > 0 ? std::min(options.clip_group, cols) : cols;
  const int64_t groups = (cols + group - 1) / group, padded = groups * group;
  // The diagonal blocks H_gg [groups, group, group] (the padding columns are zero).
  at::Tensor h = hessian.to(at::kDouble);
  if (padded != cols) h = at::constant_pad_nd(h, {0, padded - cols, 0, padded - cols});
  const at::Tensor blocks = h.reshape({groups, group, groups, group}).diagonal(0, 0, 2).permute({2, 0, 1}).contiguous();
  // err(row, g) = d_g H_gg d_g^T: the reference's per-group objective ||X_g (Q(clip w)_g - w_g)^T||^2,
  // which, like it, ignores the cross-group terms d_g H_gh d_h^T of the whole row's output error.
  const at::Tensor w_h = w.to(h.device(), at::kDouble);
  const auto errors = [&](const at::Tensor& q) {
    const at::Tensor d = by_group(q.to(h.device(), at::kDouble) - w_h, groups, group).permute({1, 0, 2});
    return (at::bmm(d, blocks) * d).sum(-1).t();  // [rows, groups]
  };

  const at::Tensor w_groups = by_group(w, groups, group);
  const at::Tensor max_abs = w_groups.abs().amax(-1, /*keepdim=*/true);  // [rows, groups, 1]
  const auto clipped_by = [&](const at::Tensor& max_val) {
    return at::clamp(w_groups, -max_val, max_val).reshape({rows, padded}).narrow(1, 0, cols);
  };
  at::Tensor best_error = at::full({rows, groups}, INFINITY, w_h.options());
  at::Tensor best_max = max_abs.clone(), best_step = at::zeros({rows, groups}, w.options());
  const int steps = std::max(1, int(options.clip_max_shrink * options.clip_grid));
  for (int i = 0; i < steps; ++i) {
    const at::Tensor max_val = max_abs * (1.0 - double(i) / options.clip_grid);
    const at::Tensor error = errors(fake_quantize(name, clipped_by(max_val)));
    const at::Tensor better = error < best_error;  // strict, as the reference: ties keep the larger ratio
    best_error = at::where(better, error, best_error);
    const at::Tensor here = better.to(w.device());
    best_max = at::where(here.unsqueeze(-1), max_val, best_max);
    best_step = at::where(here, at::full_like(best_step, double(i)), best_step);
  }
  return {clipped_by(best_max).contiguous(), 1.0 - best_step / double(options.clip_grid)};
}

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

std::shared_ptr<LinearWeight> AwqCompressor::compress(const std::string& name, const Linear& linear,
                                                     const InputStats& stats) {
  // `stats` are this linear's inputs as the engine captured them after the scales were folded (and,
  // true-sequentially, through the already compressed sublayers before it), where the reference
  // clips on the full-precision layer's inputs.
  if (!options_.clip || !awq_clips(name)) return inner_->compress(name, linear, stats);
  if (!stats.hessian.defined()) throw Error("awq: " + name + ": no activation statistics were collected");
  const at::Tensor w = linear.weight->dense();
  const AwqClip clip = search_awq_clip(name, w, stats.hessian, fake_quantize_, options_);
  // Clamping keeps every zero, so a pruned weight keeps its mask.
  Linear clipped{keep_pruning_mask(*linear.weight, std::make_shared<DenseWeight>(clip.weight.to(w.scalar_type()))),
                 linear.bias};
  ++clipped_linears_;
  clip_groups_ += clip.ratios.numel();
  ratio_sum_ += clip.ratios.to(at::kDouble).sum().item<double>();
  shrunk_groups_ += (clip.ratios < 1).sum().item<int64_t>();
  if (notes_) {
    const std::string line = strprintf("awq clip: mean ratio %.4f, %.1f%% of %lld (row, group)s clipped, over %lld "
                                       "linear layers (q_proj, k_proj are not clipped)",
                                       mean_clip_ratio(), 100 * clipped_fraction(), (long long)clip_groups_,
                                       (long long)clipped_linears_);
    if (!noted_) {
      note_index_ = notes_->size();
      notes_->push_back(line);
      noted_ = true;
    } else {
      (*notes_)[note_index_] = line;
    }
  }
  return inner_->compress(name, clipped, stats);
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
