#include "llmpress/lowrank/tensor_ops.h"

namespace llmpress {

at::Tensor unfold_mode(const at::Tensor& tensor, int64_t mode) {
  return tensor.movedim(mode, 0).reshape({tensor.size(mode), -1});
}

at::Tensor mode_product(const at::Tensor& tensor, const at::Tensor& matrix, int64_t mode) {
  return at::tensordot(tensor, matrix, {mode}, {1}).movedim(-1, mode);
}

}  // namespace llmpress
