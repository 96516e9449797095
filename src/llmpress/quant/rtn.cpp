#include "llmpress/quant/rtn.h"

#include "llmpress/model/sparse_weight.h"

namespace llmpress {

std::shared_ptr<QuantizedWeight> rtn_quantize(const at::Tensor& weight, const IntGridSpec& spec) {
  spec.check();
  const at::Tensor w = weight.to(at::kFloat);
  const int64_t rows = w.size(0), cols = w.size(1);
  const int64_t group = spec.group_size > 0 ? spec.group_size : cols;
  const int64_t groups = (cols + group - 1) / group;
  at::Tensor codes = at::empty({rows, cols}, w.options());
  at::Tensor scales = at::empty({rows, groups}, w.options()), zeros = at::empty({rows, groups}, w.options());
  for (int64_t g = 0; g < groups; ++g) {
    const int64_t start = g * group, width = std::min(group, cols - start);
    const at::Tensor part = w.narrow(1, start, width);
    const GridParams params = fit_grid(part, spec);
    codes.narrow(1, start, width).copy_(grid_codes(part, params, spec));
    scales.narrow(1, g, 1).copy_(params.scale);
    zeros.narrow(1, g, 1).copy_(params.zero);
  }
  const at::Tensor g_idx = at::div(at::arange(cols, w.options().dtype(at::kLong)), group, "floor").to(at::kInt);
  return std::make_shared<QuantizedWeight>(codes.to(at::kByte), scales.to(spec.scale_dtype), zeros.to(at::kByte),
                                           g_idx, spec, /*act_order=*/false);
}

std::shared_ptr<LinearWeight> RtnCompressor::compress(const std::string&, const Linear& linear, const InputStats&) {
  // A pruned weight keeps its zeros: 0 is on every grid (the range always contains it).
  return keep_pruning_mask(*linear.weight, rtn_quantize(linear.weight->dense(), spec_));
}

}  // namespace llmpress
