#include "llmpress/model/linear.h"

#include "llmpress/core/error.h"

namespace llmpress {

DenseWeight::DenseWeight(at::Tensor weight) : weight_(std::move(weight)) {
  if (weight_.dim() != 2) throw Error("a dense linear weight must be 2-D, got " + std::to_string(weight_.dim()) + "-D");
}

at::Tensor DenseWeight::forward(const at::Tensor& x) const {
  // A weight held in bfloat16 / float16 (a frozen teacher) multiplies in its own dtype and hands back x's.
  if (weight_.scalar_type() != x.scalar_type()) return at::linear(x.to(weight_.scalar_type()), weight_).to(x.scalar_type());
  return at::linear(x, weight_);
}

int64_t DenseWeight::storage_bits() const { return weight_.numel() * 16; }

WeightState DenseWeight::save() const { return {"dense", nlohmann::json::object(), {{"weight", weight_}}}; }

namespace {
const WeightKindRegistration dense_kind("dense", [](const WeightState& state) -> std::shared_ptr<LinearWeight> {
  return std::make_shared<DenseWeight>(state.tensor("weight"));
});
}  // namespace

at::Tensor Linear::forward(const at::Tensor& x) const {
  at::Tensor y = weight->forward(x);
  return bias.defined() ? y + bias : y;
}

}  // namespace llmpress
