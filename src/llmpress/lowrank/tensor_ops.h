#pragma once
// Small multilinear-algebra helpers shared by the CP and Tucker decompositions.
#include <ATen/ATen.h>

namespace llmpress {

// Mode-n unfolding: [I_n, prod of the other sizes] (the other modes in their order).
at::Tensor unfold_mode(const at::Tensor& tensor, int64_t mode);
// Mode-n product X x_n M for M [J, I_n]: mode n of the result has size J.
at::Tensor mode_product(const at::Tensor& tensor, const at::Tensor& matrix, int64_t mode);

}  // namespace llmpress
