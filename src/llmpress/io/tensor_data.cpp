#include "llmpress/io/tensor_data.h"

#include <cstring>
#include <limits>

#include "llmpress/core/error.h"
#include "llmpress/core/half.h"
#include "llmpress/quant/ggml_blocks.h"

namespace llmpress {

namespace {

// Every ggml type id (formats.md 1.6) with its name and block geometry, indexed by id; {nullptr}
// marks removed ids (named in removed_type_name). `decodable`: decode_to_f32 reads it.
struct GgmlType {
  TensorTypeInfo info;
  bool decodable;
};
const GgmlType kGgmlTypes[] = {
    {{"F32", 1, 4}, true},         {{"F16", 1, 2}, true},         {{"Q4_0", 32, 18}, true},
    {{"Q4_1", 32, 20}, true},      {{nullptr, 0, 0}, false},      {{nullptr, 0, 0}, false},
    {{"Q5_0", 32, 22}, true},      {{"Q5_1", 32, 24}, true},      {{"Q8_0", 32, 34}, true},
    {{"Q8_1", 32, 36}, false},     {{"Q2_K", 256, 84}, true},     {{"Q3_K", 256, 110}, true},
    {{"Q4_K", 256, 144}, true},    {{"Q5_K", 256, 176}, true},    {{"Q6_K", 256, 210}, true},
    {{"Q8_K", 256, 292}, false},   {{"IQ2_XXS", 256, 66}, true},  {{"IQ2_XS", 256, 74}, true},
    {{"IQ3_XXS", 256, 98}, true},  {{"IQ1_S", 256, 50}, true},    {{"IQ4_NL", 32, 18}, true},
    {{"IQ3_S", 256, 110}, true},   {{"IQ2_S", 256, 82}, true},    {{"IQ4_XS", 256, 136}, true},
    {{"I8", 1, 1}, false},         {{"I16", 1, 2}, false},        {{"I32", 1, 4}, true},
    {{"I64", 1, 8}, true},        {{"F64", 1, 8}, false},        {{"IQ1_M", 256, 56}, true},
    {{"BF16", 1, 2}, true},        {{nullptr, 0, 0}, false},      {{nullptr, 0, 0}, false},
    {{nullptr, 0, 0}, false},      {{"TQ1_0", 256, 54}, true},    {{"TQ2_0", 256, 66}, true},
    {{nullptr, 0, 0}, false},      {{nullptr, 0, 0}, false},      {{nullptr, 0, 0}, false},
    {{"MXFP4", 32, 17}, false},    {{"NVFP4", 64, 36}, false},    {{"Q1_0", 128, 18}, false},
    {{"Q2_0", 64, 18}, false},
};
constexpr uint32_t kGgmlTypeCount = sizeof(kGgmlTypes) / sizeof(kGgmlTypes[0]);

const char* removed_type_name(uint32_t id) {
  switch (id) {
    case 4: return "Q4_2";
    case 5: return "Q4_3";
    case 31: return "Q4_0_4_4";
    case 32: return "Q4_0_4_8";
    case 33: return "Q4_0_8_8";
    case 36: return "IQ4_NL_4_4";
    case 37: return "IQ4_NL_4_8";
    case 38: return "IQ4_NL_8_8";
    default: return nullptr;
  }
}

constexpr int64_t kQBlock = 32;  // elements per Q4_0 / Q8_0 block

// Not a ggml type (safetensors only): compressed-tensors' bitmasks.
const TensorTypeInfo kU8{"U8", 1, 1};

uint16_t read_u16(const uint8_t* p) { return uint16_t(p[0] | (p[1] << 8)); }

}  // namespace

const TensorTypeInfo* ggml_type_info(uint32_t ggml_type_id) {
  if (ggml_type_id >= kGgmlTypeCount || !kGgmlTypes[ggml_type_id].info.name) return nullptr;
  return &kGgmlTypes[ggml_type_id].info;
}

std::string ggml_type_name(uint32_t ggml_type_id) {
  if (const TensorTypeInfo* info = ggml_type_info(ggml_type_id)) return info->name;
  if (const char* removed = removed_type_name(ggml_type_id)) return std::string(removed) + " (removed from ggml)";
  return "unknown ggml type id " + std::to_string(ggml_type_id);
}

const TensorTypeInfo* tensor_type_info(uint32_t ggml_type_id) {
  const TensorTypeInfo* info = ggml_type_info(ggml_type_id);
  return info && kGgmlTypes[ggml_type_id].decodable ? info : nullptr;
}

const TensorTypeInfo& tensor_type_info(TensorType type) {
  if (type == TensorType::U8) return kU8;
  const TensorTypeInfo* info = tensor_type_info(uint32_t(type));
  if (!info) throw Error("internal: llmpress has no decoder for " + ggml_type_name(uint32_t(type)));
  return *info;
}

std::string tensor_type_name(TensorType type) { return tensor_type_info(type).name; }

std::string decodable_type_names() {
  std::string names;
  for (uint32_t id = 0; id < kGgmlTypeCount; ++id)
    if (tensor_type_info(id)) names += std::string(names.empty() ? "" : ", ") + kGgmlTypes[id].info.name;
  return names;
}

uint64_t tensor_bytes(TensorType type, uint64_t elements) {
  const TensorTypeInfo& info = tensor_type_info(type);
  if (elements % uint64_t(info.block_elements) != 0) {
    throw Error(std::to_string(elements) + " elements are not a whole number of " + info.name +
                " blocks of " + std::to_string(info.block_elements));
  }
  const uint64_t blocks = elements / uint64_t(info.block_elements);
  if (blocks > std::numeric_limits<uint64_t>::max() / uint64_t(info.block_bytes)) {
    throw Error(std::to_string(elements) + " " + info.name + " elements overflow a 64-bit byte count");
  }
  return blocks * uint64_t(info.block_bytes);
}

int64_t RawTensor::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;  // readers check shapes for overflow when they build RawTensors
  return n;
}

void decode_to_f32(TensorType type, const uint8_t* src, int64_t count, float* dst) {
  // The newer block types decode with the quantizers' own dequantize_* (ggml's arithmetic), the
  // i-quants and ternary types with ggml_iquant_blocks.cpp; F16/BF16/Q4_0/Q8_0 keep this file's
  // independent decoders.
  void (*block_decoder)(const uint8_t*, int64_t, float*) = nullptr;
  switch (type) {
    case TensorType::Q4_1: block_decoder = dequantize_q4_1; break;
    case TensorType::Q5_0: block_decoder = dequantize_q5_0; break;
    case TensorType::Q5_1: block_decoder = dequantize_q5_1; break;
    case TensorType::Q2_K: block_decoder = dequantize_q2_k; break;
    case TensorType::Q3_K: block_decoder = dequantize_q3_k; break;
    case TensorType::Q4_K: block_decoder = dequantize_q4_k; break;
    case TensorType::Q5_K: block_decoder = dequantize_q5_k; break;
    case TensorType::Q6_K: block_decoder = dequantize_q6_k; break;
    case TensorType::IQ1_S: block_decoder = dequantize_iq1_s; break;
    case TensorType::IQ1_M: block_decoder = dequantize_iq1_m; break;
    case TensorType::IQ2_XXS: block_decoder = dequantize_iq2_xxs; break;
    case TensorType::IQ2_XS: block_decoder = dequantize_iq2_xs; break;
    case TensorType::IQ2_S: block_decoder = dequantize_iq2_s; break;
    case TensorType::IQ3_XXS: block_decoder = dequantize_iq3_xxs; break;
    case TensorType::IQ3_S: block_decoder = dequantize_iq3_s; break;
    case TensorType::IQ4_NL: block_decoder = dequantize_iq4_nl; break;
    case TensorType::IQ4_XS: block_decoder = dequantize_iq4_xs; break;
    case TensorType::TQ1_0: block_decoder = dequantize_tq1_0; break;
    case TensorType::TQ2_0: block_decoder = dequantize_tq2_0; break;
    default: break;
  }
  if (block_decoder) {
    const TensorTypeInfo& info = tensor_type_info(type);
    if (count % info.block_elements != 0)
      throw Error(std::string(info.name) + " data of " + std::to_string(count) + " elements is not whole blocks");
    block_decoder(src, count, dst);
    return;
  }
  switch (type) {
    case TensorType::F32:
      std::memcpy(dst, src, size_t(count) * 4);  // little-endian host assumed (x86/ARM)
      return;
    case TensorType::F16:
      for (int64_t i = 0; i < count; ++i) dst[i] = f16_to_f32(read_u16(src + 2 * i));
      return;
    case TensorType::BF16:
      for (int64_t i = 0; i < count; ++i) dst[i] = bf16_to_f32(read_u16(src + 2 * i));
      return;
    case TensorType::I32:
      for (int64_t i = 0; i < count; ++i) {
        int32_t v;
        std::memcpy(&v, src + 4 * i, 4);
        dst[i] = float(v);
      }
      return;
    case TensorType::I64:
      for (int64_t i = 0; i < count; ++i) {
        int64_t v;
        std::memcpy(&v, src + 8 * i, 8);
        dst[i] = float(v);
      }
      return;
    case TensorType::U8:
      for (int64_t i = 0; i < count; ++i) dst[i] = float(src[i]);
      return;
    case TensorType::Q8_0: {
      if (count % kQBlock != 0) throw Error("Q8_0 data of " + std::to_string(count) + " elements is not whole blocks");
      for (int64_t b = 0; b < count / kQBlock; ++b) {
        const uint8_t* block = src + b * 34;
        const float d = f16_to_f32(read_u16(block));
        for (int j = 0; j < kQBlock; ++j) dst[b * kQBlock + j] = d * float(int8_t(block[2 + j]));
      }
      return;
    }
    case TensorType::Q4_0: {
      if (count % kQBlock != 0) throw Error("Q4_0 data of " + std::to_string(count) + " elements is not whole blocks");
      for (int64_t b = 0; b < count / kQBlock; ++b) {
        const uint8_t* block = src + b * 18;
        const float d = f16_to_f32(read_u16(block));
        float* out = dst + b * kQBlock;
        // First half of the block lives in the low nibbles, second half in the high nibbles.
        for (int j = 0; j < 16; ++j) {
          const uint8_t q = block[2 + j];
          out[j] = d * float(int(q & 0x0f) - 8);
          out[j + 16] = d * float(int(q >> 4) - 8);
        }
      }
      return;
    }
    default: break;
  }
  throw Error("internal: llmpress has no decoder for " + ggml_type_name(uint32_t(type)));
}

}  // namespace llmpress
