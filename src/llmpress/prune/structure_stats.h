#pragma once
// What structured pruning needs to know about a whole model on calibration data, from one pass:
// how much each decoder layer changes the hidden state (ShortGPT's block influence) and the
// mean and mean square of every input channel of o_proj (per-head outputs) and down_proj (MLP
// intermediate channels), for FLAP's fluctuation scores.
#include <ATen/ATen.h>

#include <vector>

#include "llmpress/model/transformer.h"

namespace llmpress {

struct ChannelMoments {
  at::Tensor mean;         // [in] float64: mean over tokens of x_j
  at::Tensor mean_square;  // [in] float64: mean over tokens of x_j^2
  at::Tensor variance() const { return (mean_square - mean.pow(2)).clamp_min(0); }
};

struct LayerStructureStats {
  double block_influence = 0;  // mean over tokens of 1 - cos(layer input, layer output)
  ChannelMoments attention;    // inputs of o_proj: [heads * head_dim]
  ChannelMoments mlp;          // inputs of down_proj: [intermediate]
};

// tokens [nsamples, seqlen] int64, run through `model` batch_samples windows at a time.
// Every layer sees the outputs of the (unpruned) layers before it.
std::vector<LayerStructureStats> collect_structure_stats(const Transformer& model, const at::Tensor& tokens,
                                                         int64_t batch_samples = 8, bool progress = true);

}  // namespace llmpress
