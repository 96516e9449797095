#include "llmpress/quant/ggml_rtn.h"

#include "llmpress/core/error.h"
#include "llmpress/model/sparse_weight.h"
#include "llmpress/quant/ggml_weight.h"

namespace llmpress {

std::shared_ptr<LinearWeight> GgmlRtnCompressor::compress(const std::string& name, const Linear& linear,
                                                          const InputStats& stats) {
  at::Tensor importance;
  if (use_importance_) {
    if (!stats.sum_squares.defined()) throw Error(describe() + ": " + name + ": no activation statistics were collected");
    importance = stats.sum_squares.to(at::kFloat);
  }
  return keep_pruning_mask(*linear.weight, GgmlWeight::encode(linear.weight->dense(), type_of(name), importance));
}

}  // namespace llmpress
