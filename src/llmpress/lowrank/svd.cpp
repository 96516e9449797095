#include "llmpress/lowrank/svd.h"

namespace llmpress {

MatrixDecomposition SvdFactorizer::decompose(const std::string&, const at::Tensor& weight, const InputStats&) const {
  return svd_of(weight.to(at::kDouble));
}

}  // namespace llmpress
