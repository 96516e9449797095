#pragma once
// Round to nearest onto ggml block types: ggml's own quantizers, optionally weighted by the
// calibration activations' per-column sum of squares — the objective of llama.cpp's imatrix, so
// the result equals llama-quantize --imatrix given the same importance vector.
#include "llmpress/quant/ggml_compressor.h"

namespace llmpress {

class GgmlRtnCompressor : public GgmlCompressor {
 public:
  GgmlRtnCompressor(std::map<std::string, TensorType> types, bool use_importance)
      : GgmlCompressor(std::move(types)), use_importance_(use_importance) {}
  std::string describe() const override { return use_importance_ ? "rtn (ggml blocks, imatrix)" : "rtn (ggml blocks)"; }
  StatsRequest needs() const override {
    StatsRequest request;
    request.input_norms = use_importance_;
    return request;
  }
  std::shared_ptr<LinearWeight> compress(const std::string& name, const Linear& linear,
                                         const InputStats& stats) override;

 private:
  bool use_importance_;
};

}  // namespace llmpress
