#pragma once
// GPTQ (Frantar et al. 2022): quantize a weight matrix column by column, spreading each column's
// rounding error onto the columns not yet quantized through the inverse Hessian of the layer's
// inputs, so that ||(W - Q)X||^2 (not ||W - Q||^2) is what gets minimized.
#include <string>

#include "llmpress/calib/compressor.h"
#include "llmpress/quant/int_grid.h"

namespace llmpress {

struct GptqOptions {
  IntGridSpec grid;
  double percdamp = 0.01;     // dampening: this fraction of the mean Hessian diagonal added to it
  int64_t block_size = 128;   // lazy batch updates: columns updated together
  bool act_order = false;     // quantize columns in order of decreasing Hessian diagonal
  bool static_groups = false; // fit all group parameters on the original weights up front
  int max_damp_increases = 6; // Cholesky failure: dampening x10 up to this many times
};

struct GptqResult {
  std::shared_ptr<QuantizedWeight> weight;  // in the original column order
  at::Tensor permutation;                   // [in] int64: permuted position k holds column permutation[k]
  at::Tensor permuted_values;               // [out, in] dequantized, in the permuted (processing) order
  double damp = 0;                          // the dampening that was finally used (absolute)
  int damp_increases = 0;
  bool fell_back_to_rtn = false;            // no dampening made the Hessian factorizable
  double loss = 0;                          // GPTQ's own error estimate, sum (w - q)^2 / d^2 / 2
};

// weight [out, in]; hessian [in, in] (any positive scale: X^T X or its mean). `name` is used in
// warnings. Never throws for a badly conditioned Hessian: it increases the dampening, and in the
// end falls back to round-to-nearest with a warning. Throws for NaN/Inf in the Hessian.
// `removed` ([out, in] bool, optional): a pruning mask to keep. Those weights get the zero code
// (exactly 0) and only the kept weights absorb the rounding errors, as in SparseGPT.
GptqResult gptq_quantize(const at::Tensor& weight, const at::Tensor& hessian, const GptqOptions& options,
                         const std::string& name = "", const at::Tensor& removed = {});

class GptqCompressor : public Compressor {
 public:
  explicit GptqCompressor(GptqOptions options) : options_(options) { options_.grid.check(); }
  std::string describe() const override;
  StatsRequest needs() const override {
    StatsRequest request;
    request.hessian = true;
    request.hessian_float32_batches = true;
    return request;
  }
  std::shared_ptr<LinearWeight> compress(const std::string& name, const Linear& linear,
                                         const InputStats& stats) override;

 private:
  GptqOptions options_;
};

}  // namespace llmpress
