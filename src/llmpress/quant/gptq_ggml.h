#pragma once
// Format-aware GPTQ: GPTQ onto a ggml block type, so the result packs exactly into a GGUF tensor
// that llama.cpp runs. At the first column of each block (32 or 256 columns) every row's block
// header (scales, mins) is fitted by ggml's importance-weighted quantizer on the weights as GPTQ
// has updated them so far, with the Hessian diagonal as importance (llama.cpp's imatrix); then the
// block's columns are rounded one at a time onto that header's grid (IQ4_NL/IQ4_XS: its 16 levels),
// each column's error spread onto the later columns through the inverse Hessian as in GPTQ. The
// lattice i-quants (IQ1_S ... IQ3_S) are rounded 8 columns at a time: each row's group of 8 becomes
// the lattice point nearest to it under the header (ggml_lattice_codes.h), then the 8 columns' errors
// are spread one after the other. TQ1_0/TQ2_0 get ggml's importance-weighted encoder.
#include "llmpress/quant/ggml_compressor.h"
#include "llmpress/quant/ggml_weight.h"
#include "llmpress/quant/gptq.h"

namespace llmpress {

// weight [out, in], hessian [in, in]. options.grid is ignored (the type is the grid); dampening,
// lazy block size (rounded up to whole ggml blocks) and the Cholesky-failure handling are GPTQ's.
// Plain float types (F16, F32) are encoded directly. `removed` (optional [out, in] bool): a pruning
// mask to keep: those weights take the code nearest to 0 (exactly 0 in the symmetric types Q4_0,
// Q5_0, Q8_0, Q3_K, Q6_K; the types with a block minimum may not hold an exact 0).
std::shared_ptr<GgmlWeight> gptq_ggml_quantize(const at::Tensor& weight, const at::Tensor& hessian, TensorType type,
                                               const GptqOptions& options, const std::string& name = "",
                                               const at::Tensor& removed = {});

class GgmlGptqCompressor : public GgmlCompressor {
 public:
  GgmlGptqCompressor(std::map<std::string, TensorType> types, GptqOptions options)
      : GgmlCompressor(std::move(types)), options_(options) {}
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
