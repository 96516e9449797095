#pragma once
// The forward pass training differentiates: Transformer::forward's arithmetic, with activation
// checkpointing per decoder layer (a layer keeps only its input and recomputes its activations in the
// backward pass, trading one more forward for memory) and the hidden states hidden-state losses read.
#include <ATen/ATen.h>

#include <vector>

#include "llmpress/model/transformer.h"

namespace llmpress {

struct ForwardOptions {
  bool checkpoint_layers = false;
  bool keep_hidden = false;  // fill ForwardResult::hidden
};

struct ForwardResult {
  at::Tensor logits;                // [B, T, vocab]
  std::vector<at::Tensor> hidden;   // the output of each decoder layer [B, T, hidden], when asked
};

// While it lives, matrix products run in bfloat16 (autocast: PyTorch's torch.autocast(dtype=bfloat16));
// weights, gradients, optimizer state and losses stay float32. Off when `enabled` is false.
class Bf16Autocast {
 public:
  Bf16Autocast(const at::Device& device, bool enabled);
  ~Bf16Autocast();
  Bf16Autocast(const Bf16Autocast&) = delete;
  Bf16Autocast& operator=(const Bf16Autocast&) = delete;
  static bool active();  // on this thread, for the checkpointed layers' recomputation

 private:
  bool enabled_, cuda_, was_enabled_ = false;
  at::ScalarType was_dtype_ = at::kFloat;
};

// tokens [B, T] int64; layout for packed rows (nullptr: one document per row, positions from 0).
ForwardResult training_forward(const Transformer& model, const at::Tensor& tokens, const PackedLayout* layout,
                               const ForwardOptions& options);

}  // namespace llmpress
