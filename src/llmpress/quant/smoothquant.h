#pragma once
// SmoothQuant (Xiao et al., 2023): moves the activation outliers of each channel into the weights that read
// it, so that 8-bit activations lose less. For the inputs of q/k/v (after input_layernorm) and of gate/up
// (after post_attention_layernorm), channel j gets
//   s_j = max|X_j|^alpha / max_i |W_ij|^(1 - alpha)        (over the calibration tokens and the readers' rows)
// the norm's weight is divided by s and every reading weight's column j multiplied by it: the model computes
// the same function (exactly in real arithmetic), with flatter activations. alpha is the migration strength.
#include <ATen/ATen.h>

#include <vector>

#include "llmpress/model/transformer.h"

namespace llmpress {

struct SmoothQuantOptions {
  double alpha = 0.5;
  int64_t batch_samples = 8;  // calibration rows per forward pass
  bool progress = true;
};

// Per layer, the per-channel max |x| of the attention input and of the MLP input over `tokens` [n, T].
struct ChannelAbsmax {
  at::Tensor attention, mlp;  // [hidden] each, float32
};
std::vector<ChannelAbsmax> input_channel_absmax(const Transformer& model, const at::Tensor& tokens,
                                                int64_t batch_samples, bool progress);

// How uneven the channels are: the largest max_j / median_j of max|X_j| over the smoothed inputs.
struct SmoothQuantResult {
  double spread_before = 0, spread_after = 0;
};

// Smooths every layer of `model` (its q/k/v/gate/up weights must be dense: Error otherwise).
SmoothQuantResult smooth_quant(Transformer& model, const at::Tensor& tokens, const SmoothQuantOptions& options);

}  // namespace llmpress
