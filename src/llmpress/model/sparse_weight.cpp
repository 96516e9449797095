#include "llmpress/model/sparse_weight.h"

#include "llmpress/core/error.h"

namespace llmpress {

SparseWeight::SparseWeight(std::shared_ptr<LinearWeight> values, at::Tensor removed, int64_t n, int64_t m)
    : values_(std::move(values)), removed_(removed.to(at::kBool)), n_(n), m_(m) {
  if (!values_) throw Error("sparse weight: no values");
  if (values_->kind() == "sparse") throw Error("sparse weight: the values are already a sparse weight");
  if (removed_.dim() != 2 || removed_.size(0) != values_->out_features() || removed_.size(1) != values_->in_features())
    throw Error("sparse weight: the mask's shape differs from the weight's");
  if (n_ < 0 || m_ < 0 || n_ > m_ || (m_ == 0) != (n_ == 0)) throw Error("sparse weight: bad N:M pattern");
}

int64_t SparseWeight::removed_count() const { return removed_.sum().item<int64_t>(); }

std::vector<TrainableTensor> SparseWeight::trainable() const {
  std::vector<TrainableTensor> tensors = values_->trainable();
  for (TrainableTensor& t : tensors)
    if (t.tensor.sizes() == removed_.sizes()) t.removed = t.removed.defined() ? (t.removed | removed_) : removed_;
  return tensors;
}

int64_t SparseWeight::storage_bits() const {
  if (values_->kind() != "dense") return values_->storage_bits();
  const int64_t elements = removed_.numel();
  return (elements - removed_count()) * 16 + elements;
}

bool SparseWeight::zeros_exact() const {
  return !(dense().masked_select(removed_.to(dense().device())) != 0).any().item<bool>();
}

WeightState SparseWeight::save() const {
  WeightState state{"sparse", {{"n", n_}, {"m", m_}}, {{"removed", removed_}}};
  state.put("values", *values_);
  return state;
}

std::shared_ptr<LinearWeight> keep_pruning_mask(const LinearWeight& source, std::shared_ptr<LinearWeight> weight) {
  const PruningMask mask = source.pruning_mask();
  if (!mask.removed.defined() || weight.get() == &source) return weight;
  if (const PruningMask inner = weight->pruning_mask(); inner.removed.defined()) return weight;
  return std::make_shared<SparseWeight>(std::move(weight), mask.removed, mask.n, mask.m);
}

std::shared_ptr<LinearWeight> recognize_pruning(std::shared_ptr<LinearWeight> weight) {
  const at::Tensor w = weight->dense();
  if (w.dim() != 2 || w.numel() == 0) return weight;
  const at::Tensor removed = w == 0;
  const int64_t zeros = removed.sum().item<int64_t>();
  if (zeros * 10 < w.numel()) return weight;
  const bool quantized = weight->kind() != "dense";
  int64_t n = 0, m = 0;
  for (const auto& [pn, pm] : {std::pair<int64_t, int64_t>{2, 4}, std::pair<int64_t, int64_t>{4, 8}}) {
    if (w.size(1) % pm != 0) continue;
    const at::Tensor kept = (~removed).reshape({w.size(0), w.size(1) / pm, pm}).sum(-1);
    if ((kept <= pn).all().item<bool>()) {
      n = pn;
      m = pm;
      break;
    }
  }
  if (quantized && m == 0) return weight;
  return std::make_shared<SparseWeight>(std::move(weight), removed, n, m);
}

namespace {
const WeightKindRegistration sparse_kind("sparse", [](const WeightState& state) -> std::shared_ptr<LinearWeight> {
  return std::make_shared<SparseWeight>(state.take("values"), state.tensor("removed"), state.meta.at("n").get<int64_t>(),
                                        state.meta.at("m").get<int64_t>());
});
}  // namespace

}  // namespace llmpress
