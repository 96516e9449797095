#include "llmpress/lowrank/low_rank_weight.h"

#include "llmpress/core/error.h"
#include "llmpress/quant/int_grid.h"

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
  for (const auto* f : {u_.get(), v_.get()})
    bits += f->kind() == "dense" ? f->in_features() * f->out_features() * 16 : f->storage_bits();
  return bits;
}

at::Tensor LowRankWeight::dense() const {
  return at::matmul(u_->dense().to(at::kFloat), v_->dense().to(at::kFloat));
}

std::map<std::string, at::Tensor> LowRankWeight::state() const {
  std::map<std::string, at::Tensor> out;
  for (const auto& [prefix, f] : {std::pair{"u.", u_.get()}, std::pair{"v.", v_.get()}}) {
    if (const auto* q = dynamic_cast<const QuantizedWeight*>(f)) {
      for (const auto& [key, t] : q->state()) out[prefix + key] = t;
    } else {
      out[std::string(prefix) + "weight"] = f->dense();
    }
  }
  return out;
}

std::shared_ptr<LowRankWeight> LowRankWeight::from_state(const std::map<std::string, at::Tensor>& state) {
  auto factor = [&](const std::string& prefix) -> std::shared_ptr<LinearWeight> {
    std::map<std::string, at::Tensor> part;
    for (const auto& [key, t] : state)
      if (key.rfind(prefix, 0) == 0) part[key.substr(prefix.size())] = t;
    if (part.size() == 1 && part.count("weight")) return std::make_shared<DenseWeight>(part.at("weight"));
    if (part.empty()) throw Error("low-rank weight: saved state has no factor '" + prefix + "'");
    return QuantizedWeight::from_state(part);
  };
  return std::make_shared<LowRankWeight>(factor("u."), factor("v."));
}

}  // namespace llmpress
