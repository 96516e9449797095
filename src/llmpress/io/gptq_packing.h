#pragma once
// The GPTQ checkpoint bit packing (formats.md 5.1): runs of 32 codes of b bits along one dimension
// become one LSB-first stream of 32*b bits spread over b int32 words (so 3-bit codes straddle words).
#include <ATen/ATen.h>

namespace llmpress {

// codes [rows, cols] (integers in 0..2^bits-1, any integer dtype), rows a multiple of 32
// -> int32 [rows * bits / 32, cols]: packed along dim 0, as qweight is.
at::Tensor pack_gptq_rows(const at::Tensor& codes, int bits);
// The inverse: int32 [rows * bits / 32, cols] -> int64 codes [rows, cols].
at::Tensor unpack_gptq_rows(const at::Tensor& packed, int bits);

}  // namespace llmpress
