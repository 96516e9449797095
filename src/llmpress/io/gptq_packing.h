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

// The AWQ (GEMM) packing (formats.md 5.3): 4-bit codes along the columns, 8 per int32; nibble i of
// word c holds column 8c + {0, 2, 4, 6, 1, 3, 5, 7}[i]. codes [rows, cols], cols a multiple of 8
// -> int32 [rows, cols / 8], as qweight ([in, out]) and qzeros ([groups, out]) are.
at::Tensor pack_awq_columns(const at::Tensor& codes);
// The inverse: int32 [rows, cols / 8] -> int64 codes [rows, cols].
at::Tensor unpack_awq_columns(const at::Tensor& packed);

}  // namespace llmpress
