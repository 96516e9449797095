#include "llmpress/quant/ggml_weight.h"

#include "llmpress/core/error.h"
#include "llmpress/export/ggml_quantize.h"

namespace llmpress {

GgmlWeight::GgmlWeight(TensorType type, at::Tensor bytes, int64_t in_features)
    : type_(type), bytes_(bytes.to(at::kCPU).contiguous()), in_features_(in_features) {
  if (bytes_.scalar_type() != at::kByte || bytes_.dim() != 2)
    throw Error("ggml weight: bytes must be a 2-D uint8 tensor");
  const int64_t rows = bytes_.size(0);
  if (uint64_t(bytes_.numel()) != ggml_encoded_bytes(type, in_features, rows))
    throw Error(std::string("ggml weight: ") + std::to_string(bytes_.numel()) + " bytes do not hold " +
                std::to_string(rows) + " rows of " + std::to_string(in_features) + " " + ggml_encoding(type).name +
                " elements");
  decoded_ = at::empty({rows, in_features}, at::kFloat);
  decode_to_f32(type, bytes_.data_ptr<uint8_t>(), rows * in_features, decoded_.data_ptr<float>());
}

std::shared_ptr<GgmlWeight> GgmlWeight::encode(const at::Tensor& weight, TensorType type, const at::Tensor& importance) {
  const at::Tensor w = weight.to(at::kCPU, at::kFloat).contiguous();
  const int64_t rows = w.size(0), cols = w.size(1);
  at::Tensor imp;
  if (importance.defined()) imp = importance.to(at::kCPU, at::kFloat).contiguous();
  const std::vector<uint8_t> bytes =
      encode_rows_weighted(type, w.data_ptr<float>(), cols, rows, imp.defined() ? imp.data_ptr<float>() : nullptr);
  at::Tensor packed = at::empty({rows, int64_t(bytes.size()) / rows}, at::kByte);
  std::memcpy(packed.data_ptr<uint8_t>(), bytes.data(), bytes.size());
  return std::make_shared<GgmlWeight>(type, packed, cols);
}

at::Tensor GgmlWeight::forward(const at::Tensor& x) const {
  return at::matmul(x, dense().to(x.device(), x.scalar_type()).t());
}

std::map<std::string, at::Tensor> GgmlWeight::state() const {
  return {{"bytes", bytes_}, {"meta", at::tensor({int64_t(type_), in_features_}, at::kLong)}};
}

std::shared_ptr<GgmlWeight> GgmlWeight::from_state(const std::map<std::string, at::Tensor>& state) {
  if (!state.count("bytes") || !state.count("meta") || state.at("meta").numel() != 2)
    throw Error("saved ggml weight lacks 'bytes' or 'meta'");
  const at::Tensor meta = state.at("meta").to(at::kLong);
  return std::make_shared<GgmlWeight>(TensorType(meta[0].item<int64_t>()), state.at("bytes"), meta[1].item<int64_t>());
}

}  // namespace llmpress
