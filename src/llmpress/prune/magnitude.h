#pragma once
// Magnitude pruning: remove the weights of smallest |w|, counted per output row, per layer, or
// against one threshold shared by every pruned layer of the model (global).
#include <vector>

#include "llmpress/calib/compressor.h"
#include "llmpress/prune/mask.h"

namespace llmpress {

// Global scope: the |w| at or below which weights are removed so that pruned_count(total, s)
// of all the given weights go (ties at the threshold go too). Holds one float32 copy of them.
double global_magnitude_threshold(const std::vector<at::Tensor>& weights, double sparsity);

// weight [out, in] -> the same with the removed weights set to 0 (float32).
at::Tensor magnitude_prune(const at::Tensor& weight, const SparsityTarget& target, MaskScope scope);

class MagnitudeCompressor : public Compressor {
 public:
  MagnitudeCompressor(SparsityTarget target, MaskScope scope);
  // Global scope with a threshold from global_magnitude_threshold.
  explicit MagnitudeCompressor(double global_threshold);
  std::string describe() const override;
  StatsRequest needs() const override { return {}; }
  std::shared_ptr<LinearWeight> compress(const std::string& name, const Linear& linear,
                                         const InputStats& stats) override;

 private:
  SparsityTarget target_;
  MaskScope scope_ = MaskScope::Layer;
  bool global_ = false;
  double global_threshold_ = -1;
};

}  // namespace llmpress
