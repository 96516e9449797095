#pragma once
// EfficientQAT's Block-AP (Chen et al. 2024): every decoder layer is quantized by another compressor
// (its initialisation: RTN's min/max grid as in the paper, or GPTQ), then its quantized weights, their
// quantization parameters and its norms are trained, through fake-quant weights (fake_quant.h), to
// reproduce the uncompressed layer's outputs (mean squared error) on the calibration inputs; the
// trained layer is exported exactly onto its format before the next layer's inputs are computed.
// As in the paper's code, the inputs come through the already quantized layers and the targets through
// the uncompressed ones; AdamW with one learning rate for the weights and norms and one for the
// quantization parameters, each on a cosine schedule down to lr / min_lr_factor; samples in order.
#include <map>
#include <memory>

#include "llmpress/calib/compressor.h"

namespace llmpress {

struct BlockApOptions {
  int64_t epochs = 2;         // passes over the calibration samples per layer
  int64_t batch_size = 2;     // samples per step
  double weight_lr = 2e-5;    // quantized layers' weights and the layer's norms (0: frozen)
  double quant_lr = 1e-3;     // scales, zero points, mins, relative to their start (0: frozen)
  double min_lr_factor = 20;  // the cosine schedules end at lr / min_lr_factor
  double weight_decay = 0;
  bool bf16 = false;          // matrix products in bfloat16 (autocast)
  // The latent weights start from the full-precision ones (the paper, with RTN's grid), not from the
  // dequantized initialisation (which keeps GPTQ's codes as the starting point).
  bool latent_from_original = true;
  void check() const;         // Error naming the option
};

class BlockApCompressor : public Compressor {
 public:
  BlockApCompressor(std::unique_ptr<Compressor> init, BlockApOptions options);
  std::string describe() const override;
  StatsRequest needs() const override { return init_->needs(); }
  std::shared_ptr<LinearWeight> compress(const std::string& name, const Linear& linear, const InputStats& stats) override;
  bool prepares_layers() const override { return init_->prepares_layers(); }
  void prepare_layer(int64_t index, DecoderLayer& layer, const ModelConfig& config,
                     const std::vector<InputStats>& group_stats) override {
    init_->prepare_layer(index, layer, config, group_stats);
  }
  bool trains_layers() const override { return true; }
  void train_layer(int64_t index, DecoderLayer& layer, const Transformer& shell, const at::Tensor& inputs,
                   const at::Tensor& targets) override;

 private:
  std::unique_ptr<Compressor> init_;
  BlockApOptions options_;
  std::map<std::string, at::Tensor> originals_;  // this layer's full-precision weights, by linear name
};

}  // namespace llmpress
