#pragma once
// AWQ (Lin et al. 2023): before a group of linear layers that share an input is quantized, scale
// its input channels by s = mean|x|^alpha (normalized), with alpha chosen on a grid of 20 points in
// [0, 1) to minimize the quantized group's output error on the calibration activations, and fold
// 1/s into the preceding RMSNorm or linear layer so the unquantized model computes the same
// function. The scaled weights are then quantized by an inner compressor (RTN or GPTQ, onto an
// integer grid or ggml blocks).
//
// The output error of a candidate is evaluated exactly from the group's Hessian,
// ||(Q(W s)/s - W) X||^2 = tr(D H D^T), instead of by running samples. Groups and their folds:
// q/k/v <- input_layernorm; o_proj <- v_proj (only without grouped-query attention, as in the
// reference: with GQA one v channel feeds several o channels); gate/up <- post_attention_layernorm;
// down_proj <- up_proj.
#include <functional>
#include <memory>

#include "llmpress/calib/compressor.h"

namespace llmpress {

// What the inner quantizer makes of a weight, dequantized: used to score the candidate scales.
using FakeQuantizer = std::function<at::Tensor(const std::string& name, const at::Tensor& weight)>;

struct AwqOptions {
  int grid_points = 20;  // alpha = 0, 1/n, ..., (n-1)/n
};

// Scales input channels of group `group` of `layer` by `scales` [in] and folds 1/scales into the
// preceding norm or linear layer. Throws Error for the o_proj group under grouped-query attention.
void fold_awq_scales(DecoderLayer& layer, size_t group, const at::Tensor& scales, const ModelConfig& config);

class AwqCompressor : public Compressor {
 public:
  AwqCompressor(std::unique_ptr<Compressor> inner, FakeQuantizer fake_quantize, AwqOptions options = {})
      : inner_(std::move(inner)), fake_quantize_(std::move(fake_quantize)), options_(options) {}
  std::string describe() const override { return "awq + " + inner_->describe(); }
  StatsRequest needs() const override;
  bool prepares_layers() const override { return true; }
  // Searches and folds the scales of each group in order (q/k/v, o, gate/up, down), as the reference does.
  void prepare_layer(int64_t layer_index, DecoderLayer& layer, const ModelConfig& config,
                     const std::vector<InputStats>& group_stats) override;
  std::shared_ptr<LinearWeight> compress(const std::string& name, const Linear& linear,
                                         const InputStats& stats) override {
    return inner_->compress(name, linear, stats);
  }

  // The alpha chosen for each foldable group, in processing order (for reports and tests).
  const std::vector<double>& chosen_alphas() const { return alphas_; }

 private:
  std::unique_ptr<Compressor> inner_;
  FakeQuantizer fake_quantize_;
  AwqOptions options_;
  std::vector<double> alphas_;

  // Chooses alpha for one group on its dense-layer statistics; returns the scales (undefined: alpha 0).
  at::Tensor search_scales(const std::string& prefix, size_t group, const DecoderLayer& layer, const InputStats& stats);
};

}  // namespace llmpress
