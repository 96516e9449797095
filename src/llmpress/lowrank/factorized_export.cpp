#include "llmpress/lowrank/factorized_export.h"

#include "llmpress/core/error.h"

namespace llmpress {

void add_factorized_layer(const std::string& name, const at::Tensor& u, const at::Tensor& v,
                          std::vector<NamedTensor>& tensors, HfCheckpointOptions& options) {
  if (!u.defined() || !v.defined() || u.dim() != 2 || v.dim() != 2 || u.size(1) != v.size(0) || u.size(1) < 1)
    throw Error("factorized export: factors of " + name + " must be [out, r] and [r, in]");
  // A broadcast zero: the right shape for the checks without allocating the product.
  tensors.push_back({name + ".weight", at::zeros({1}, at::kFloat).expand({u.size(0), v.size(1)})});
  options.replacements[name + ".weight"] = {{name + ".weight_u", u.to(at::kCPU, at::kFloat).contiguous()},
                                            {name + ".weight_v", v.to(at::kCPU, at::kFloat).contiguous()}};
}

}  // namespace llmpress
