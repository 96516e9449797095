#include "llmpress/io/tensor_data.h"

#include <cstring>
#include <limits>

#include "llmpress/core/error.h"
#include "llmpress/core/half.h"
#include "llmpress/quant/ggml_blocks.h"

namespace llmpress {

namespace {

constexpr int64_t kQBlock = 32;  // elements per Q4_0 / Q8_0 block

const TensorTypeInfo kF32{"F32", 1, 4};
const TensorTypeInfo kF16{"F16", 1, 2};
const TensorTypeInfo kBF16{"BF16", 1, 2};
const TensorTypeInfo kI32{"I32", 1, 4};
const TensorTypeInfo kI64{"I64", 1, 8};
const TensorTypeInfo kU8{"U8", 1, 1};
const TensorTypeInfo kQ4_0{"Q4_0", kQBlock, 18};
const TensorTypeInfo kQ8_0{"Q8_0", kQBlock, 34};
const TensorTypeInfo kQ4_1{"Q4_1", kQBlock, 20};
const TensorTypeInfo kQ5_0{"Q5_0", kQBlock, 22};
const TensorTypeInfo kQ5_1{"Q5_1", kQBlock, 24};
const TensorTypeInfo kQ2_K{"Q2_K", kSuperBlockElements, 84};
const TensorTypeInfo kQ3_K{"Q3_K", kSuperBlockElements, 110};
const TensorTypeInfo kQ4_K{"Q4_K", kSuperBlockElements, 144};
const TensorTypeInfo kQ5_K{"Q5_K", kSuperBlockElements, 176};
const TensorTypeInfo kQ6_K{"Q6_K", kSuperBlockElements, 210};

uint16_t read_u16(const uint8_t* p) { return uint16_t(p[0] | (p[1] << 8)); }

}  // namespace

const TensorTypeInfo* tensor_type_info(uint32_t ggml_type_id) {
  switch (ggml_type_id) {
    case uint32_t(TensorType::F32): return &kF32;
    case uint32_t(TensorType::F16): return &kF16;
    case uint32_t(TensorType::BF16): return &kBF16;
    case uint32_t(TensorType::I32): return &kI32;
    case uint32_t(TensorType::I64): return &kI64;
    case uint32_t(TensorType::Q4_0): return &kQ4_0;
    case uint32_t(TensorType::Q8_0): return &kQ8_0;
    case uint32_t(TensorType::Q4_1): return &kQ4_1;
    case uint32_t(TensorType::Q5_0): return &kQ5_0;
    case uint32_t(TensorType::Q5_1): return &kQ5_1;
    case uint32_t(TensorType::Q2_K): return &kQ2_K;
    case uint32_t(TensorType::Q3_K): return &kQ3_K;
    case uint32_t(TensorType::Q4_K): return &kQ4_K;
    case uint32_t(TensorType::Q5_K): return &kQ5_K;
    case uint32_t(TensorType::Q6_K): return &kQ6_K;
    default: return nullptr;
  }
}

const TensorTypeInfo& tensor_type_info(TensorType type) {
  if (type == TensorType::U8) return kU8;
  const TensorTypeInfo* info = tensor_type_info(uint32_t(type));
  if (!info) throw Error("internal: unknown tensor type id " + std::to_string(uint32_t(type)));
  return *info;
}

std::string tensor_type_name(TensorType type) { return tensor_type_info(type).name; }

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
  // The newer block types decode with the quantizers' own dequantize_* (ggml's arithmetic);
  // F16/BF16/Q4_0/Q8_0 keep this file's independent decoders.
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
  throw Error("internal: cannot decode tensor type id " + std::to_string(uint32_t(type)));
}

}  // namespace llmpress
