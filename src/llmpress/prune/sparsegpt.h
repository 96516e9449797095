#pragma once
// SparseGPT (Frantar & Alistarh 2023): prune a weight matrix column by column in blocks, choosing
// the mask of each block of columns by the OBS saliency w^2 / [H^-1]_jj and spreading each
// removed (or rounded) weight's error onto the not yet processed columns through the inverse
// Hessian of the layer's inputs, so that ||(W - W')X||^2 is what gets minimized. Optionally the
// kept weights are quantized onto an integer grid in the same pass (the paper's joint mode).
#include <optional>
#include <string>

#include "llmpress/prune/mask.h"
#include "llmpress/calib/compressor.h"
#include "llmpress/quant/int_grid.h"

namespace llmpress {

struct SparseGptOptions {
  SparsityTarget target;
  double percdamp = 0.01;      // dampening: this fraction of the mean Hessian diagonal added to it
  int64_t block_size = 128;    // columns whose mask is chosen together (unstructured), lazy updates
  int max_damp_increases = 6;  // Cholesky failure: dampening x10 up to this many times
  std::optional<IntGridSpec> grid;  // joint quantization of the kept weights
  // Weights that are already exactly zero stay zero (removed in addition to the target's mask):
  // quantizing an already pruned model (sparsity 0 + grid is then GPTQ that keeps the mask).
  bool keep_zeros = false;
};

struct SparseGptResult {
  at::Tensor weight;  // [out, in] float32; removed weights exactly 0, kept ones on the grid if any
  at::Tensor mask;    // [out, in] bool: true where the mask removed the weight
  std::shared_ptr<QuantizedWeight> quantized;  // with options.grid: the same weight as codes
  double damp = 0;    // the dampening finally used (absolute)
  int damp_increases = 0;
  bool fell_back = false;  // no dampening made H factorizable: per-block magnitude pruning, no updates
  double loss = 0;         // the algorithm's own error estimate, sum (w - q)^2 / d^2 / 2
};

// weight [out, in]; hessian [in, in] (any positive scale). Inputs that were zero for every
// calibration token get their weights zeroed (they carry no information). Never throws for a
// badly conditioned Hessian (see GPTQ); throws for NaN/Inf in it, bad shapes, or an N:M pattern
// whose M does not divide the block size and the input size.
SparseGptResult sparsegpt_prune(const at::Tensor& weight, const at::Tensor& hessian, const SparseGptOptions& options,
                                const std::string& name = "");

class SparseGptCompressor : public Compressor {
 public:
  explicit SparseGptCompressor(SparseGptOptions options);
  std::string describe() const override;
  StatsRequest needs() const override {
    StatsRequest request;
    request.hessian = true;
    return request;
  }
  // A QuantizedWeight with joint quantization, a DenseWeight otherwise.
  std::shared_ptr<LinearWeight> compress(const std::string& name, const Linear& linear,
                                         const InputStats& stats) override;

 private:
  SparseGptOptions options_;
};

}  // namespace llmpress
