#pragma once
// The Compressor that replaces each linear layer by a LowRankWeight: a MatrixFactorizer (SVD,
// ASVD, SVD-LLM) decomposes the weight, RankSpec picks the rank, and a layer whose factorized
// form would not be smaller (r (in + out) >= in out) stays dense. Optionally each factor is
// rounded to an integer grid (RTN), which is how factorization combines with quantization.
#include <memory>
#include <optional>

#include "llmpress/calib/compressor.h"
#include "llmpress/lowrank/low_rank_weight.h"
#include "llmpress/lowrank/matrix_factorizer.h"
#include "llmpress/lowrank/rank_selection.h"
#include "llmpress/quant/int_grid.h"

namespace llmpress {

class LowRankCompressor : public Compressor {
 public:
  LowRankCompressor(std::shared_ptr<const MatrixFactorizer> factorizer, RankSpec ranks,
                    std::optional<IntGridSpec> factor_grid = std::nullopt);
  std::string describe() const override;
  StatsRequest needs() const override { return factorizer_->needs(); }
  std::shared_ptr<LinearWeight> compress(const std::string& name, const Linear& linear,
                                         const InputStats& stats) override;

 private:
  std::shared_ptr<const MatrixFactorizer> factorizer_;
  RankSpec ranks_;
  std::optional<IntGridSpec> factor_grid_;
};

// Rank-r factors of `decomposition` as a LowRankWeight (float32 on `device`), each factor
// RTN-quantized when `grid` is given.
std::shared_ptr<LowRankWeight> make_low_rank_weight(const MatrixDecomposition& decomposition, int64_t rank,
                                                    const at::Device& device,
                                                    const std::optional<IntGridSpec>& grid = std::nullopt);

}  // namespace llmpress
