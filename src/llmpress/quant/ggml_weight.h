#pragma once
// A linear weight stored as ggml blocks (Q4_K, Q8_0, ...; or F16/F32 rows), exactly the bytes a
// GGUF file holds for it, in the Hugging Face row order (the GGUF writer permutes q/k rows). Only
// the bytes are held; the float matrix is decoded when needed (DecodedCache keeps it within a budget).
#include <ATen/ATen.h>

#include <string>

#include "llmpress/io/tensor_data.h"
#include "llmpress/model/linear.h"

namespace llmpress {

class GgmlWeight : public LinearWeight {
 public:
  // bytes: [out, row_bytes] uint8 (kept on the CPU), each row a whole number of `type` blocks of `in`
  // elements. `device`: where dense() and forward() deliver the decoded matrix.
  GgmlWeight(TensorType type, at::Tensor bytes, int64_t in_features, const at::Device& device = at::kCPU);
  ~GgmlWeight() override;
  // Encodes weight [out, in] row by row with ggml's quantizer, weighted by `importance` ([in]
  // float32, an imatrix column) when it is defined. The result lives on the weight's device.
  static std::shared_ptr<GgmlWeight> encode(const at::Tensor& weight, TensorType type,
                                            const at::Tensor& importance = {});

  at::Tensor forward(const at::Tensor& x) const override;
  int64_t in_features() const override { return in_features_; }
  int64_t out_features() const override { return bytes_.size(0); }
  int64_t storage_bits() const override { return bytes_.numel() * 8; }
  // Decoded with ggml's dequantization arithmetic, float32, on the weight's device.
  at::Tensor dense() const override;
  std::string kind() const override { return "ggml"; }
  WeightState save() const override;

  TensorType type() const { return type_; }
  const at::Tensor& bytes() const { return bytes_; }
  const at::Device& device() const { return device_; }

 private:
  at::Tensor decode() const;  // float32 on the CPU

  TensorType type_;
  at::Tensor bytes_;
  int64_t in_features_;
  at::Device device_;
};

}  // namespace llmpress
