#pragma once
// Reading Hugging Face GPTQ checkpoints (formats.md 5.1, 5.2): linear layers stored as qweight,
// qzeros, scales and g_idx are presented as ordinary "...weight" tensors, dequantized on load.
#include <map>
#include <string>

#include <ATen/ATen.h>

#include "llmpress/io/tensor_data.h"

namespace llmpress {

class Checkpoint;

struct GptqPackedLinear {
  RawTensor qweight, qzeros, scales, g_idx;  // g_idx.data null: the default k / group_size
  int bits = 4;
  int64_t group_size = -1;  // -1: one group per output row
  bool zero_minus_one = true;  // checkpoint format "gptq" (v1) stores zero - 1
  bool symmetric = false;      // quantization_config.sym
  int64_t in_features = 0, out_features = 0;
};

// If config.json's quantization_config says quant_method "gptq", replaces every module's packed
// tensors in checkpoint.tensors by one "<module>.weight" entry (shape [out, in]) and records how to
// dequantize it in checkpoint.gptq_linears. Throws an Error naming the file for inconsistent
// shapes or dtypes, unsupported bit widths, or g_idx values out of range.
void attach_gptq_linears(Checkpoint& checkpoint, const std::string& config_path);

// The unpacked integer form, in the layout of llmpress's integer-grid weights: codes [out, in]
// uint8, scales [out, groups] float16, zero points [out, groups] int32 (v1's stored zero - 1
// undone), g_idx [in] int32, and whether g_idx differs from k / group_size (act-order).
struct GptqCodes {
  at::Tensor codes, scales, zeros, g_idx;
  bool act_order = false;
};
GptqCodes unpack_gptq_linear(const GptqPackedLinear& linear);

// The float32 [out, in] weight: scales[g_idx[k], n] * (q[k, n] - zero[g_idx[k], n]).
at::Tensor dequantize_gptq(const GptqPackedLinear& linear);

}  // namespace llmpress
