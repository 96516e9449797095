#include "llmpress/lowrank/tucker_weight.h"

#include "llmpress/core/error.h"

namespace llmpress {

TuckerWeight::TuckerWeight(TuckerDecomposition decomposition, int64_t out, int64_t in, const at::Device& device)
    : decomposition_(std::move(decomposition)) {
  const at::Tensor full = decomposition_.reconstruct();
  if (full.numel() != out * in) throw Error("tucker weight: the decomposed tensor does not have out x in elements");
  dense_ = full.reshape({out, in}).to(device, at::kFloat).contiguous();
}

}  // namespace llmpress
