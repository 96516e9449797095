#pragma once
// Wanda (Sun et al. 2023): score each weight by |w_ij| * ||X_j||, the magnitude times the L2 norm
// of its input channel over the calibration tokens, and remove the lowest scores of each output
// row (or of each group of M inputs for N:M). No weight update.
#include "llmpress/calib/compressor.h"
#include "llmpress/prune/mask.h"

namespace llmpress {

// weight [out, in]; sum_squares [in] (InputStats::sum_squares) -> pruned weight (float32).
at::Tensor wanda_prune(const at::Tensor& weight, const at::Tensor& sum_squares, const SparsityTarget& target,
                       MaskScope scope = MaskScope::Row);

class WandaCompressor : public Compressor {
 public:
  explicit WandaCompressor(SparsityTarget target, MaskScope scope = MaskScope::Row);
  std::string describe() const override;
  StatsRequest needs() const override {
    StatsRequest request;
    request.input_norms = true;
    return request;
  }
  std::shared_ptr<LinearWeight> compress(const std::string& name, const Linear& linear,
                                         const InputStats& stats) override;

 private:
  SparsityTarget target_;
  MaskScope scope_;
};

}  // namespace llmpress
