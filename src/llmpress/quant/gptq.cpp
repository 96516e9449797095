#include "llmpress/quant/gptq.h"

#include <cstdio>

#include "llmpress/core/error.h"
#include "llmpress/core/log.h"
#include "llmpress/model/sparse_weight.h"
#include "llmpress/quant/hessian_factor.h"

namespace llmpress {

GptqResult gptq_quantize(const at::Tensor& weight, const at::Tensor& hessian, const GptqOptions& options,
                         const std::string& name, const at::Tensor& removed_mask) {
  const IntGridSpec& spec = options.grid;
  spec.check();
  if (weight.dim() != 2) throw Error("gptq: weight must be 2-D");
  const int64_t rows = weight.size(0), cols = weight.size(1);
  if (hessian.dim() != 2 || hessian.size(0) != cols || hessian.size(1) != cols)
    throw Error("gptq: " + name + ": Hessian must be [" + std::to_string(cols) + ", " + std::to_string(cols) + "]");
  const auto device = weight.device();
  at::Tensor w = weight.to(at::kFloat).clone();
  at::Tensor h = hessian.to(device, at::kDouble).clone();
  if (!at::isfinite(h).all().item<bool>()) throw Error("gptq: " + name + ": the Hessian contains NaN or Inf");
  const bool masked = removed_mask.defined();
  at::Tensor removed = masked ? removed_mask.to(device, at::kBool) : at::Tensor();
  if (masked && removed.sizes() != w.sizes()) throw Error("gptq: " + name + ": the pruning mask's shape differs");
  if (masked) w.masked_fill_(removed, 0.0);

  // Inputs that were zero for every calibration token carry no information: the column is
  // zeroed and its diagonal set to 1 so the factorization stays well defined.
  const at::Tensor dead = h.diagonal() == 0;
  h.diagonal().masked_fill_(dead, 1.0);
  w.masked_fill_(dead.unsqueeze(0), 0.0);

  const int64_t group = spec.group_size > 0 ? spec.group_size : cols;
  const int64_t groups = (cols + group - 1) / group;
  const bool grouped = spec.group_size > 0;
  at::Tensor scales = at::zeros({rows, groups}, w.options()), zeros = at::zeros({rows, groups}, w.options());
  std::vector<GridParams> static_params;
  if (grouped && options.static_groups) {
    for (int64_t g = 0; g < groups; ++g) {
      static_params.push_back(fit_grid(w.narrow(1, g * group, std::min(group, cols - g * group)), spec));
      scales.narrow(1, g, 1).copy_(static_params.back().scale);
      zeros.narrow(1, g, 1).copy_(static_params.back().zero);
    }
  }

  // Act-order: the columns with the largest input energy go first, while many columns remain to
  // absorb their error.
  at::Tensor perm = at::arange(cols, w.options().dtype(at::kLong));
  if (options.act_order) {
    perm = std::get<1>(at::sort(h.diagonal(), /*stable=*/true, 0, /*descending=*/true));
    w = w.index_select(1, perm);
    h = h.index_select(0, perm).index_select(1, perm);
    if (masked) removed = removed.index_select(1, perm);
  }
  const at::Tensor perm_cpu = perm.to(at::kCPU);
  const int64_t* perm_at = perm_cpu.data_ptr<int64_t>();

  GptqResult result;
  InverseHessianFactor factor =
      inverse_hessian_factor(h, options.percdamp, options.max_damp_increases, name.empty() ? "gptq" : name);
  result.damp = factor.damp;
  result.damp_increases = factor.increases;
  if (!factor.ok) {
    // With an identity factor nothing is propagated: every column is rounded to nearest.
    log_warning(strprintf("%s: Hessian not factorizable even with dampening %.3g; rounding to nearest",
                 name.empty() ? "gptq" : name.c_str(), factor.damp));
    factor.upper = at::eye(cols, h.options());
    result.fell_back_to_rtn = true;
  }
  const at::Tensor u = factor.upper.to(at::kFloat);

  at::Tensor values = at::zeros_like(w), codes = at::zeros_like(w);
  at::Tensor g_idx_perm = at::zeros({cols}, w.options().dtype(at::kLong));
  GridParams params;
  if (!grouped) {
    params = fit_grid(w, spec);
    scales.copy_(params.scale);
    zeros.copy_(params.zero);
  }
  at::Tensor loss = at::zeros({}, w.options().dtype(at::kDouble));

  for (int64_t i1 = 0; i1 < cols; i1 += options.block_size) {
    const int64_t n = std::min(options.block_size, cols - i1), i2 = i1 + n;
    at::Tensor w1 = w.narrow(1, i1, n).clone();
    at::Tensor err1 = at::zeros_like(w1);
    const at::Tensor u1 = u.narrow(0, i1, n).narrow(1, i1, n);
    for (int64_t i = 0; i < n; ++i) {
      const int64_t k = i1 + i;
      if (grouped) {
        if (options.static_groups) {
          params = static_params[size_t(perm_at[k] / group)];
        } else if (k % group == 0) {
          // Fitted when the group starts, on the weights as updated by every earlier column
          // (inside this block from w1, beyond it from w).
          at::Tensor part = w1.narrow(1, i, std::min(group, n - i));
          if (part.size(1) < group && i2 < cols)
            part = at::cat({part, w.narrow(1, i2, std::min(group - part.size(1), cols - i2))}, 1);
          // Removed weights become exactly 0 whatever the updates did to them: they do not shape the grid.
          if (masked) part = part.masked_fill(removed.narrow(1, k, part.size(1)), 0.0);
          params = fit_grid(part, spec);
          scales.narrow(1, k / group, 1).copy_(params.scale);
          zeros.narrow(1, k / group, 1).copy_(params.zero);
        }
        g_idx_perm[k] = options.static_groups ? perm_at[k] / group : k / group;
      }
      const at::Tensor col = w1.narrow(1, i, 1);  // [rows, 1]
      at::Tensor code = grid_codes(col, params, spec);
      if (masked) code = at::where(removed.narrow(1, k, 1), params.zero.expand_as(code), code);
      const at::Tensor q = grid_values(code, params.scale, params.zero);
      codes.narrow(1, k, 1).copy_(code);
      values.narrow(1, k, 1).copy_(q);
      const at::Tensor d = u1[i][i];
      const at::Tensor err = (col - q) / d;  // [rows, 1]
      loss += err.pow(2).sum().to(at::kDouble) / 2;
      w1.narrow(1, i, n - i).sub_(at::matmul(err, u1.narrow(0, i, 1).narrow(1, i, n - i)));
      err1.narrow(1, i, 1).copy_(err);
    }
    // Lazy batch update: the rest of the matrix receives this block's errors in one product.
    if (i2 < cols) w.narrow(1, i2, cols - i2).sub_(at::matmul(err1, u.narrow(0, i1, n).narrow(1, i2, cols - i2)));
  }

  const at::Tensor inverse = at::argsort(perm);
  result.permutation = perm;
  result.permuted_values = values;
  result.loss = loss.item<double>();
  result.weight = std::make_shared<QuantizedWeight>(
      codes.index_select(1, inverse).to(at::kByte), scales.to(spec.scale_dtype), zeros.to(at::kByte),
      g_idx_perm.index_select(0, inverse).to(at::kInt), spec,
      /*act_order=*/options.act_order && grouped && !options.static_groups);
  return result;
}

std::string GptqCompressor::describe() const {
  char text[160];
  std::snprintf(text, sizeof text, "gptq %s damp %.3g block %lld%s%s", options_.grid.describe().c_str(),
                options_.percdamp, (long long)options_.block_size, options_.act_order ? " act-order" : "",
                options_.static_groups ? " static-groups" : "");
  return text;
}

std::shared_ptr<LinearWeight> GptqCompressor::compress(const std::string& name, const Linear& linear,
                                                       const InputStats& stats) {
  if (!stats.hessian.defined()) throw Error("gptq: " + name + ": no Hessian was collected");
  const PruningMask mask = linear.weight->pruning_mask();
  return keep_pruning_mask(*linear.weight,
                           gptq_quantize(linear.weight->dense(), stats.hessian, options_, name, mask.removed).weight);
}

}  // namespace llmpress
