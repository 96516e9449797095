#include "llmpress/lowrank/low_rank_weight.h"

#include "llmpress/core/error.h"

namespace llmpress {

LowRankWeight::LowRankWeight(at::Tensor u, at::Tensor v) {
  if (u.dim() != 2 || v.dim() != 2 || u.size(1) != v.size(0))
    throw Error("low-rank weight: factors must be [out, r] and [r, in]");
  u_ = std::make_shared<DenseWeight>(std::move(u));
  v_ = std::make_shared<DenseWeight>(std::move(v));
}

LowRankWeight::LowRankWeight(std::shared_ptr<LinearWeight> u, std::shared_ptr<LinearWeight> v)
    : u_(std::move(u)), v_(std::move(v)) {
  if (!u_ || !v_ || u_->in_features() != v_->out_features())
    throw Error("low-rank weight: the factors' inner dimensions differ");
}

at::Tensor LowRankWeight::forward(const at::Tensor& x) const { return u_->forward(v_->forward(x)); }

int64_t LowRankWeight::storage_bits() const {
  int64_t bits = 0;
  for (const auto* f : {u_.get(), v_.get()}) bits += f->storage_bits();
  return bits;
}

at::Tensor LowRankWeight::dense() const {
  return at::matmul(u_->dense().to(at::kFloat), v_->dense().to(at::kFloat));
}

std::vector<TrainableTensor> LowRankWeight::trainable() const {
  std::vector<TrainableTensor> tensors;
  for (const auto& [suffix, factor] : {std::pair{"_u", u_}, std::pair{"_v", v_}})
    for (TrainableTensor t : factor->trainable()) tensors.push_back({suffix + t.suffix, t.tensor, t.removed});
  return tensors;
}

WeightState LowRankWeight::save() const {
  WeightState state{"lowrank", nlohmann::json::object(), {}};
  state.put("u", *u_);
  state.put("v", *v_);
  return state;
}

namespace {
const WeightKindRegistration lowrank_kind("lowrank", [](const WeightState& state) -> std::shared_ptr<LinearWeight> {
  return std::make_shared<LowRankWeight>(state.take("u"), state.take("v"));
});
}  // namespace

}  // namespace llmpress
