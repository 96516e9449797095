#pragma once
// Tucker decomposition applied to the attention projections, whose matrices have a head
// structure: q/k/v_proj [heads * head_dim, hidden] as [heads, head_dim, hidden] and o_proj
// [hidden, heads * head_dim] as [hidden, heads, head_dim]. The head mode keeps its full rank; the
// other two get the ranks that fit `ratio` of the matrix's parameters with the least HOSVD error
// bound. Other layers (the MLP) are left dense. Like plain SVD it ignores the inputs.
#include <vector>

#include "llmpress/calib/compressor.h"

namespace llmpress {

class TuckerCompressor : public Compressor {
 public:
  TuckerCompressor(double ratio, int64_t head_dim, int64_t max_iterations = 20);
  std::string describe() const override;
  StatsRequest needs() const override { return {}; }
  std::shared_ptr<LinearWeight> compress(const std::string& name, const Linear& linear,
                                         const InputStats& stats) override;

 private:
  double ratio_;
  int64_t head_dim_, max_iterations_;
};

// Ranks for a 3-way tensor where mode `full_mode` keeps its size: among the rank pairs of the other
// two modes whose Tucker parameters fit `budget`, the one with the least discarded energy of the two
// unfoldings (the HOSVD error bound). Empty when nothing fits.
std::vector<int64_t> tucker_ranks_for_budget(const at::Tensor& tensor, int64_t full_mode, double budget);

}  // namespace llmpress
