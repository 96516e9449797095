#pragma once
// Reading compressed-tensors sparse checkpoints (layout in export/sparse_checkpoint_writer.h):
// layers stored as M.shape / M.compressed / M.bitmask (/ M.row_offsets) are presented as ordinary
// "M.weight" tensors, rebuilt dense and exact on load.
#include <map>
#include <string>

#include <ATen/ATen.h>

#include "llmpress/io/tensor_data.h"

namespace llmpress {

class Checkpoint;

struct SparseCompressedLinear {
  bool two_four = false;  // sparse-24-bitmask (compressed is [out, in/2]); otherwise sparse-bitmask
  RawTensor compressed, bitmask, row_offsets;  // row_offsets.data null for 2:4
  int64_t out_features = 0, in_features = 0;
};

// If config.json's quantization_config (or the older compression_config) says quant_method
// "compressed-tensors" with a sparsity_config, replaces every compressed module's tensors in
// checkpoint.tensors by one "<module>.weight" entry (shape [out, in], the values' dtype) and
// records how to rebuild it in checkpoint.sparse_linears. Throws an Error naming the file for
// unknown formats, quantization (not supported), and tensors whose dtypes or shapes disagree.
void attach_sparse_linears(Checkpoint& checkpoint, const std::string& config_path);

// The float32 [out, in] weight. Checks what attach could not without reading the data: the
// bitmask's popcount against the number of values, row_offsets (monotone, in range, equal to the
// bitmask's row counts), zero padding bits, and for 2:4 exactly two bits per group of four.
at::Tensor decompress_sparse(const SparseCompressedLinear& linear);

}  // namespace llmpress
