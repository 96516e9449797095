#include "llmpress/lowrank/tucker_weight.h"

#include "llmpress/core/error.h"

namespace llmpress {

TuckerWeight::TuckerWeight(TuckerDecomposition decomposition, int64_t out, int64_t in, const at::Device& device)
    : decomposition_(std::move(decomposition)) {
  const at::Tensor full = decomposition_.reconstruct();
  if (full.numel() != out * in) throw Error("tucker weight: the decomposed tensor does not have out x in elements");
  dense_ = full.reshape({out, in}).to(device, at::kFloat).contiguous();
}

WeightState TuckerWeight::save() const {
  WeightState state{"tucker", {{"matrix_shape", {out_features(), in_features()}}}, {{"core", decomposition_.core}}};
  for (size_t n = 0; n < decomposition_.factors.size(); ++n)
    state.tensors["factor" + std::to_string(n)] = decomposition_.factors[n];
  return state;
}

namespace {
const WeightKindRegistration tucker_kind("tucker", [](const WeightState& state) -> std::shared_ptr<LinearWeight> {
  TuckerDecomposition d;
  d.core = state.tensor("core");
  for (int64_t n = 0; n < d.core.dim(); ++n) d.factors.push_back(state.tensor("factor" + std::to_string(n)));
  const auto shape = state.meta.at("matrix_shape").get<std::vector<int64_t>>();
  if (shape.size() != 2) throw Error("saved tucker weight has a bad matrix_shape");
  return std::make_shared<TuckerWeight>(d, shape[0], shape[1], d.core.device());
});
}  // namespace

}  // namespace llmpress
