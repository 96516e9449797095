#include "llmpress/quant/ggml_weight.h"

#include <ATen/Parallel.h>

#include "llmpress/core/error.h"
#include "llmpress/export/ggml_quantize.h"
#include "llmpress/model/decoded_cache.h"

namespace llmpress {

GgmlWeight::GgmlWeight(TensorType type, at::Tensor bytes, int64_t in_features, const at::Device& device)
    : type_(type), bytes_(bytes.to(at::kCPU).contiguous()), in_features_(in_features), device_(device) {
  if (bytes_.scalar_type() != at::kByte || bytes_.dim() != 2)
    throw Error("ggml weight: bytes must be a 2-D uint8 tensor");
  // Any type llmpress decodes (the read-only i-quants too), not only those it can encode.
  const TensorTypeInfo& info = tensor_type_info(type);
  const int64_t rows = bytes_.size(0);
  if (in_features < 0 || in_features % info.block_elements != 0 ||
      bytes_.numel() != rows * (in_features / info.block_elements) * info.block_bytes)
    throw Error(std::string("ggml weight: ") + std::to_string(bytes_.numel()) + " bytes do not hold " +
                std::to_string(rows) + " rows of " + std::to_string(in_features) + " " + info.name + " elements");
}

GgmlWeight::~GgmlWeight() { DecodedCache::forget(this); }

std::shared_ptr<GgmlWeight> GgmlWeight::encode(const at::Tensor& weight, TensorType type, const at::Tensor& importance) {
  const at::Tensor w = weight.to(at::kCPU, at::kFloat).contiguous();
  const int64_t rows = w.size(0), cols = w.size(1);
  at::Tensor imp;
  if (importance.defined()) imp = importance.to(at::kCPU, at::kFloat).contiguous();
  const std::vector<uint8_t> bytes =
      encode_rows_weighted(type, w.data_ptr<float>(), cols, rows, imp.defined() ? imp.data_ptr<float>() : nullptr);
  at::Tensor packed = at::empty({rows, int64_t(bytes.size()) / rows}, at::kByte);
  std::memcpy(packed.data_ptr<uint8_t>(), bytes.data(), bytes.size());
  return std::make_shared<GgmlWeight>(type, packed, cols, weight.device());
}

at::Tensor GgmlWeight::decode() const {
  const int64_t rows = bytes_.size(0), row_bytes = bytes_.size(1);
  at::Tensor out = at::empty({rows, in_features_}, at::kFloat);
  const uint8_t* src = bytes_.data_ptr<uint8_t>();
  float* dst = out.data_ptr<float>();
  // Rows decode independently; ggml's per-block arithmetic is unchanged by the split.
  at::parallel_for(0, rows, 16, [&](int64_t begin, int64_t end) {
    decode_to_f32(type_, src + begin * row_bytes, (end - begin) * in_features_, dst + begin * in_features_);
  });
  return out;
}

at::Tensor GgmlWeight::dense() const {
  return DecodedCache::get(this, device_, at::kFloat, [this] { return decode(); });
}

at::Tensor GgmlWeight::forward(const at::Tensor& x) const {
  const at::Tensor w = DecodedCache::get(this, x.device(), x.scalar_type(), [this] { return decode(); });
  return at::linear(x, w);
}

WeightState GgmlWeight::save() const {
  return {"ggml", {{"type", tensor_type_name(type_)}, {"type_id", uint32_t(type_)}, {"in_features", in_features_}},
          {{"bytes", bytes_}}};
}

namespace {
const WeightKindRegistration ggml_kind("ggml", [](const WeightState& state) -> std::shared_ptr<LinearWeight> {
  const uint32_t id = state.meta.at("type_id").get<uint32_t>();
  if (!tensor_type_info(id)) throw Error("saved ggml weight has an unknown ggml type id " + std::to_string(id));
  const at::Tensor& bytes = state.tensor("bytes");
  return std::make_shared<GgmlWeight>(TensorType(id), bytes, state.meta.at("in_features").get<int64_t>(),
                                      bytes.device());
});
}  // namespace

}  // namespace llmpress
