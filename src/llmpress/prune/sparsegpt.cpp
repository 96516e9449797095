#include "llmpress/prune/sparsegpt.h"

#include <cstdio>

#include "llmpress/core/error.h"
#include "llmpress/core/log.h"
#include "llmpress/model/sparse_weight.h"
#include "llmpress/quant/hessian_factor.h"

namespace llmpress {

SparseGptResult sparsegpt_prune(const at::Tensor& weight, const at::Tensor& hessian, const SparseGptOptions& options,
                                const std::string& name) {
  const std::string label = "sparsegpt: " + (name.empty() ? std::string("weight") : name);
  const SparsityTarget& target = options.target;
  target.check();
  if (options.grid) options.grid->check();
  if (weight.dim() != 2) throw Error(label + ": weight must be 2-D");
  const int64_t rows = weight.size(0), cols = weight.size(1);
  if (hessian.dim() != 2 || hessian.size(0) != cols || hessian.size(1) != cols)
    throw Error(label + ": Hessian must be [" + std::to_string(cols) + ", " + std::to_string(cols) + "]");
  if (options.block_size < 1) throw Error(label + ": block size must be positive");
  if (target.semi_structured() && (options.block_size % target.m != 0 || cols % target.m != 0))
    throw Error(label + ": a " + target.describe() + " pattern needs the block size (" +
                std::to_string(options.block_size) + ") and the input size (" + std::to_string(cols) +
                ") to be multiples of " + std::to_string(target.m));

  const auto device = weight.device();
  at::Tensor w = weight.to(at::kFloat).clone();
  // Taken before any update: compensation makes later zeros nonzero before their block is reached.
  const at::Tensor zeros_kept = options.keep_zeros ? (w == 0) : at::Tensor();
  at::Tensor h = hessian.to(device, at::kDouble).clone();
  if (!at::isfinite(h).all().item<bool>()) throw Error(label + ": the Hessian contains NaN or Inf");
  const at::Tensor dead = h.diagonal() == 0;
  h.diagonal().masked_fill_(dead, 1.0);
  w.masked_fill_(dead.unsqueeze(0), 0.0);

  SparseGptResult result;
  InverseHessianFactor factor = inverse_hessian_factor(h, options.percdamp, options.max_damp_increases, label);
  result.damp = factor.damp;
  result.damp_increases = factor.increases;
  if (!factor.ok) {
    // With an identity factor the saliency is w^2 and nothing is propagated: magnitude pruning.
    log_warning(strprintf("%s: Hessian not factorizable even with dampening %.3g; pruning by magnitude",
                 label.c_str(), factor.damp));
    factor.upper = at::eye(cols, h.options());
    result.fell_back = true;
  }
  const at::Tensor u = factor.upper.to(at::kFloat);

  // Joint quantization: grids per row (group_size <= 0, fitted once up front as the reference
  // does) or per group of columns, fitted when the group starts on the weights as updated so far.
  const IntGridSpec spec = options.grid.value_or(IntGridSpec{});
  const bool quantize = options.grid.has_value();
  const bool grouped = quantize && spec.group_size > 0;
  const int64_t group = grouped ? spec.group_size : cols;
  const int64_t groups = (cols + group - 1) / group;
  at::Tensor scales = at::zeros({rows, groups}, w.options()), zeros = at::zeros({rows, groups}, w.options());
  at::Tensor codes = quantize ? at::zeros_like(w) : at::Tensor();
  GridParams params;
  if (quantize && !grouped) {
    params = fit_grid(w, spec);
    scales.copy_(params.scale);
    zeros.copy_(params.zero);
  }

  at::Tensor values = at::zeros_like(w);
  at::Tensor mask = at::zeros({rows, cols}, w.options().dtype(at::kBool));
  at::Tensor loss = at::zeros({}, w.options().dtype(at::kDouble));
  for (int64_t i1 = 0; i1 < cols; i1 += options.block_size) {
    const int64_t n = std::min(options.block_size, cols - i1), i2 = i1 + n;
    at::Tensor w1 = w.narrow(1, i1, n).clone();
    at::Tensor err1 = at::zeros_like(w1);
    const at::Tensor u1 = u.narrow(0, i1, n).narrow(1, i1, n);
    // U_jj^2 is [H^-1]_jj of the columns not yet fixed: the OBS saliency is w^2 / U_jj^2.
    const at::Tensor d2 = u1.diagonal().pow(2).unsqueeze(0);  // [1, n]
    at::Tensor mask1 = target.semi_structured()
                           ? at::zeros({rows, n}, mask.options())
                           : lowest_mask(w1.pow(2) / d2, target.sparsity, MaskScope::Layer);
    if (options.keep_zeros) mask1 = mask1 | zeros_kept.narrow(1, i1, n);
    for (int64_t i = 0; i < n; ++i) {
      const int64_t k = i1 + i;
      if (target.semi_structured() && i % target.m == 0) {
        const at::Tensor saliency = w1.narrow(1, i, target.m).pow(2) / d2.narrow(1, i, target.m);
        at::Tensor group_mask = nm_mask(saliency, target.n, target.m);
        if (options.keep_zeros) group_mask = group_mask | zeros_kept.narrow(1, i1 + i, target.m);
        mask1.narrow(1, i, target.m).copy_(group_mask);
      }
      if (grouped && k % group == 0) {
        at::Tensor part = w1.narrow(1, i, std::min(group, n - i));
        if (part.size(1) < group && i2 < cols)
          part = at::cat({part, w.narrow(1, i2, std::min(group - part.size(1), cols - i2))}, 1);
        params = fit_grid(part, spec);
        scales.narrow(1, k / group, 1).copy_(params.scale);
        zeros.narrow(1, k / group, 1).copy_(params.zero);
      }
      const at::Tensor col = w1.narrow(1, i, 1);  // [rows, 1]
      at::Tensor q = col.masked_fill(mask1.narrow(1, i, 1), 0.0);
      if (quantize) {
        // 0 is always on the grid (its code is the zero point), so removed weights stay exactly 0.
        const at::Tensor code = grid_codes(q, params, spec);
        codes.narrow(1, k, 1).copy_(code);
        q = grid_values(code, params.scale, params.zero);
      }
      values.narrow(1, k, 1).copy_(q);
      const at::Tensor err = (col - q) / u1[i][i];
      loss += err.pow(2).sum().to(at::kDouble) / 2;
      w1.narrow(1, i, n - i).sub_(at::matmul(err, u1.narrow(0, i, 1).narrow(1, i, n - i)));
      err1.narrow(1, i, 1).copy_(err);
    }
    mask.narrow(1, i1, n).copy_(mask1);
    if (i2 < cols) w.narrow(1, i2, cols - i2).sub_(at::matmul(err1, u.narrow(0, i1, n).narrow(1, i2, cols - i2)));
  }

  result.weight = values;
  result.mask = mask;
  result.loss = loss.item<double>();
  if (quantize) {
    const at::Tensor g_idx = at::div(at::arange(cols, w.options().dtype(at::kLong)), group, "floor").to(at::kInt);
    result.quantized = std::make_shared<QuantizedWeight>(codes.to(at::kByte), scales.to(spec.scale_dtype),
                                                         zeros.to(at::kByte), g_idx, spec, /*act_order=*/false);
  }
  return result;
}

SparseGptCompressor::SparseGptCompressor(SparseGptOptions options) : options_(std::move(options)) {
  options_.target.check();
  if (options_.grid) options_.grid->check();
}

std::string SparseGptCompressor::describe() const {
  char text[200];
  std::snprintf(text, sizeof text, "sparsegpt %s damp %.3g block %lld%s%s%s", options_.target.describe().c_str(),
                options_.percdamp, (long long)options_.block_size, options_.grid ? " + " : "",
                options_.grid ? options_.grid->describe().c_str() : "", options_.keep_zeros ? " keep-zeros" : "");
  return text;
}

std::shared_ptr<LinearWeight> SparseGptCompressor::compress(const std::string& name, const Linear& linear,
                                                            const InputStats& stats) {
  if (!stats.hessian.defined()) throw Error("sparsegpt: " + name + ": no Hessian was collected");
  check_pattern_fits(options_.target, linear.weight->in_features(), name);
  SparseGptOptions options = options_;
  // An already pruned weight keeps its zeros: the OBS update only moves the weights that remain.
  if (linear.weight->pruning_mask().removed.defined()) options.keep_zeros = true;
  SparseGptResult r = sparsegpt_prune(linear.weight->dense(), stats.hessian, options, name);
  std::shared_ptr<LinearWeight> values = r.quantized;
  if (!values) values = std::make_shared<DenseWeight>(r.weight);
  const PruningMask before = linear.weight->pruning_mask();
  const bool semi = options_.target.semi_structured();
  return std::make_shared<SparseWeight>(values, r.mask, semi ? options_.target.n : before.n,
                                        semi ? options_.target.m : before.m);
}

}  // namespace llmpress
