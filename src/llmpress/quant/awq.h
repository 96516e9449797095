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
//
// Then, as the second half of the reference (llm-awq's auto_clip_layer, AutoAWQ's auto_clip), each
// linear layer except q_proj and k_proj (their outputs meet in the q k^T product, so the reference
// does not clip them) is clipped before the inner compressor sees it: per output row and group of
// input columns, w is clamped to +-r max|w| with r in {1, 0.95, ..., 0.55}, r chosen to minimize
// the output error of the quantized clipped weight on that group's columns, exactly from the
// Hessian: (Q(clip w) - w)_g H_gg (Q(clip w) - w)_g^T.
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "llmpress/calib/compressor.h"

namespace llmpress {

// What the inner quantizer makes of a weight, dequantized: used to score the candidate scales.
using FakeQuantizer = std::function<at::Tensor(const std::string& name, const at::Tensor& weight)>;

struct AwqOptions {
  int grid_points = 20;  // alpha = 0, 1/n, ..., (n-1)/n
  // The clipping search (false: the scales alone, as before clipping existed).
  bool clip = true;
  int clip_grid = 20;           // ratios 1 - i/clip_grid ...
  double clip_max_shrink = 0.5;  // ... for i < clip_max_shrink * clip_grid (1, 0.95, ..., 0.55)
  // Input columns per clipping group: the integer grid's group (<= 0: the whole row), 32 (the
  // smallest block) for ggml types. make_quantizer sets it from the grid.
  int64_t clip_group = 128;
};

// The clipped weight and the ratio chosen per (row, group).
struct AwqClip {
  at::Tensor weight;  // [out, in] float32, on the weight's device
  at::Tensor ratios;  // [out, groups] float32: max_val / max|w| of each (row, group)
};

// AWQ's clipping search on one weight [out, in] with its inputs' Hessian [in, in] (any positive
// multiple of sum x x^T): every candidate ratio quantizes the whole clipped matrix with
// `fake_quantize` (called with `name`), and each (row, group) keeps the first ratio, in order from
// 1 down, whose error beats all before it (the reference's strict <, so ties keep the larger).
AwqClip search_awq_clip(const std::string& name, const at::Tensor& weight, const at::Tensor& hessian,
                        const FakeQuantizer& fake_quantize, const AwqOptions& options);

// Whether AWQ clips the linear layer `name` (all but q_proj and k_proj).
bool awq_clips(const std::string& name);

// Scales input channels of group `group` of `layer` by `scales` [in] and folds 1/scales into the
// preceding norm or linear layer. Throws Error for the o_proj group under grouped-query attention.
void fold_awq_scales(DecoderLayer& layer, size_t group, const at::Tensor& scales, const ModelConfig& config);

class AwqCompressor : public Compressor {
 public:
  AwqCompressor(std::unique_ptr<Compressor> inner, FakeQuantizer fake_quantize, AwqOptions options = {})
      : inner_(std::move(inner)), fake_quantize_(std::move(fake_quantize)), options_(options) {}
  std::string describe() const override { return (options_.clip ? "awq + clip + " : "awq + ") + inner_->describe(); }
  StatsRequest needs() const override;
  bool prepares_layers() const override { return true; }
  // Searches and folds the scales of each group in order (q/k/v, o, gate/up, down), as the reference does.
  void prepare_layer(int64_t layer_index, DecoderLayer& layer, const ModelConfig& config,
                     const std::vector<InputStats>& group_stats) override;
  // Clips the weight (options.clip; not q_proj, k_proj) and passes it to the inner compressor.
  std::shared_ptr<LinearWeight> compress(const std::string& name, const Linear& linear,
                                         const InputStats& stats) override;

  // The alpha chosen for each foldable group, in processing order (for reports and tests).
  const std::vector<double>& chosen_alphas() const { return alphas_; }
  // Clipping so far: the linears clipped, their (row, group)s, the mean ratio and the fraction below 1.
  int64_t clipped_linears() const { return clipped_linears_; }
  int64_t clip_groups() const { return clip_groups_; }
  double mean_clip_ratio() const { return clip_groups_ ? ratio_sum_ / double(clip_groups_) : 1.0; }
  double clipped_fraction() const { return clip_groups_ ? double(shrunk_groups_) / double(clip_groups_) : 0.0; }
  // Keeps a line on the clipping (mean ratio) up to date in `notes` (a stage report's notes).
  void report_clipping_to(std::vector<std::string>* notes) { notes_ = notes; }

 private:
  std::unique_ptr<Compressor> inner_;
  FakeQuantizer fake_quantize_;
  AwqOptions options_;
  std::vector<double> alphas_;
  int64_t clipped_linears_ = 0, clip_groups_ = 0, shrunk_groups_ = 0;
  double ratio_sum_ = 0;
  std::vector<std::string>* notes_ = nullptr;
  size_t note_index_ = 0;  // notes_[note_index_] is our line once written (notes only grow)
  bool noted_ = false;

  // Chooses alpha for one group on its dense-layer statistics; returns the scales (undefined: alpha 0).
  at::Tensor search_scales(const std::string& prefix, size_t group, const DecoderLayer& layer, const InputStats& stats);
};

}  // namespace llmpress
