#include "llmpress/lowrank/low_rank_compressor.h"

#include "llmpress/core/error.h"
#include "llmpress/quant/rtn.h"

namespace llmpress {

LowRankCompressor::LowRankCompressor(std::shared_ptr<const MatrixFactorizer> factorizer, RankSpec ranks,
                                     std::optional<IntGridSpec> factor_grid)
    : factorizer_(std::move(factorizer)), ranks_(std::move(ranks)), factor_grid_(factor_grid) {
  ranks_.check();
  if (factor_grid_) factor_grid_->check();
}

std::string LowRankCompressor::describe() const {
  std::string text = factorizer_->describe() + ", " + ranks_.describe();
  if (factor_grid_) text += ", factors " + factor_grid_->describe();
  return text;
}

std::shared_ptr<LowRankWeight> make_low_rank_weight(const MatrixDecomposition& decomposition, int64_t rank,
                                                    const at::Device& device, const std::optional<IntGridSpec>& grid) {
  auto [u, v] = decomposition.factors(rank);
  u = u.to(device, at::kFloat).contiguous();
  v = v.to(device, at::kFloat).contiguous();
  if (!grid) return std::make_shared<LowRankWeight>(u, v);
  return std::make_shared<LowRankWeight>(std::shared_ptr<LinearWeight>(rtn_quantize(u, *grid)),
                                         std::shared_ptr<LinearWeight>(rtn_quantize(v, *grid)));
}

std::shared_ptr<LinearWeight> LowRankCompressor::compress(const std::string& name, const Linear& linear,
                                                          const InputStats& stats) {
  const int64_t out = linear.weight->out_features(), in = linear.weight->in_features();
  const int64_t rank = ranks_.rank_for(name, out, in);
  if (!factorization_saves(out, in, rank)) return linear.weight;
  const at::Tensor weight = linear.weight->dense();
  return make_low_rank_weight(factorizer_->decompose(name, weight, stats), rank, weight.device(), factor_grid_);
}

}  // namespace llmpress
