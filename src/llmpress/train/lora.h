#pragma once
// Low-rank adapters on a frozen base weight of any kind (dense, an integer grid, ggml blocks: QLoRA-style
// fine-tuning of a quantized model), as PEFT defines them:
//   y = base(x) + (alpha / r) * B A dropout(x)          A [r, in], B [out, r]; A ~ U(+-1/sqrt(in)), B = 0
// and QA-LoRA's group-pooled variant, whose input is averaged over groups of `group` input columns:
//   y = base(x) + (alpha / r) * B A dropout(pool(x))    A [r, in / group]
// so that its update B A / group is constant inside each quantization group and merges into the groups'
// offsets (Q4_1 / Q5_1 block mins) without leaving the grid. A QA-LoRA adapter is also an ordinary LoRA
// (A repeated over each group and divided by the group size), which is how it is exported unmerged.
#include <ATen/ATen.h>

#include <memory>
#include <string>
#include <vector>

#include "llmpress/export/lora_adapter.h"
#include "llmpress/model/linear.h"
#include "llmpress/model/transformer.h"

namespace llmpress {

struct LoraSpec {
  int64_t rank = 8;
  double alpha = 16;
  double dropout = 0;  // on the adapter's input, while gradients are recorded (training)
  int64_t group = 0;   // QA-LoRA: input columns per pooled group (0: plain LoRA)
  uint64_t seed = 0;   // of A's initialisation
  void check() const;  // Error for a rank < 1, a negative alpha or group, a dropout outside [0, 1)
};

class LoraWeight : public LinearWeight {
 public:
  // A fresh adapter on `device` (B = 0: the output starts exactly at the base's). Error when group does
  // not divide the input width.
  LoraWeight(std::shared_ptr<LinearWeight> base, const LoraSpec& spec, const at::Device& device = at::kCPU);
  // Restored factors: a [r, in or in / group], b [out, r].
  LoraWeight(std::shared_ptr<LinearWeight> base, at::Tensor a, at::Tensor b, double alpha, double dropout, int64_t group);

  at::Tensor forward(const at::Tensor& x) const override;
  int64_t in_features() const override { return base_->in_features(); }
  int64_t out_features() const override { return base_->out_features(); }
  // The base as stored plus the factors at 32 bits (as the adapter files store them).
  int64_t storage_bits() const override;
  int64_t parameter_count() const override;
  at::Tensor dense() const override;  // the base's matrix plus the update, float32
  std::string kind() const override { return "lora"; }
  WeightState save() const override;
  // "_lora_A" and "_lora_B"; the base stays frozen.
  std::vector<TrainableTensor> trainable() const override;

  // (alpha / r) B A expanded to [out, in] float32: what merging adds to the base's matrix.
  at::Tensor update() const;
  // The adapter as plain LoRA factors for PEFT and llama.cpp: a [r, in] (QA-LoRA's pooling folded in), b [out, r].
  at::Tensor plain_a() const;
  const at::Tensor& b() const { return b_; }
  int64_t rank() const { return b_.size(1); }
  double alpha() const { return alpha_; }
  double dropout() const { return dropout_; }
  int64_t group() const { return group_; }
  const std::shared_ptr<LinearWeight>& base() const { return base_; }

 private:
  std::shared_ptr<LinearWeight> base_;
  at::Tensor a_, b_;
  double alpha_, dropout_;
  int64_t group_;
};

// Puts an adapter on every decoder linear whose name (model.layers.3.mlp.down_proj) the ECMAScript regex
// `target` matches (searched; empty: all). Each layer's A is seeded from spec.seed and its position.
// Returns how many; Error when none matches.
int64_t add_lora(Transformer& model, const LoraSpec& spec, const std::string& target);

struct MergeCounts {
  int64_t exact = 0;        // QA-LoRA updates added to Q4_1 / Q5_1 block mins (rounded to f16 as stored)
  int64_t requantized = 0;  // base + update re-encoded onto the base's own format (ggml type or integer grid, RTN)
  int64_t dense = 0;        // dense bases (and kinds without a format to re-encode onto): base + update
};

// Replaces every LoraWeight of `model` by a weight of its base's kind holding base + update.
MergeCounts merge_lora(Transformer& model);
// One adapter's merge: the exact block-min merge where the base and group allow it, else as MergeCounts says.
std::shared_ptr<LinearWeight> merged_weight(const LoraWeight& lora, MergeCounts& counts);

// Puts an adapter read from `source` (read_lora_adapter) on the model's linears, dropout off. Error naming
// `source` for a module whose shape differs from the model's. Returns how many.
int64_t apply_lora_adapter(Transformer& model, const LoraAdapter& adapter, const std::string& source);

// The linears of `layer` that carry an adapter, by their name in the layer (self_attn.q_proj).
std::vector<std::pair<std::string, const LoraWeight*>> lora_adapters(const DecoderLayer& layer);

}  // namespace llmpress
