#pragma once
// A linear layer slot and the weight kinds it can hold. Compression methods replace a slot's
// weight with another kind (quantized, sparse, low-rank); the forward pass only calls forward().
#include <ATen/ATen.h>

#include <memory>
#include <string>
#include <vector>

#include "llmpress/model/weight_kinds.h"

namespace llmpress {

// Which weights of a pruned matrix were removed: [out, in] bool, true = removed; the N:M pattern
// it was pruned to (0:0 = unstructured). `removed` is undefined for an unpruned weight.
struct PruningMask {
  at::Tensor removed;
  int64_t n = 0, m = 0;
};

// A tensor training may update in place, named by a suffix of the weight's name ("" for a plain
// matrix, "_u" / "_v" for low-rank factors, "_qscale" ... for quantization parameters), with the
// positions that must stay exactly zero.
struct TrainableTensor {
  std::string suffix;
  at::Tensor tensor;
  at::Tensor removed;  // undefined: none
  bool decay = true;   // weight decay applies (matrices); not to quantization parameters
};

class LinearWeight {
 public:
  virtual ~LinearWeight() = default;
  // x [..., in_features] -> [..., out_features]
  virtual at::Tensor forward(const at::Tensor& x) const = 0;
  virtual int64_t in_features() const = 0;
  virtual int64_t out_features() const = 0;
  // Size of the stored representation in the formats that hold this kind as it is: dense values at
  // 16 bits (an fp16/bf16 checkpoint), quantized ones at their packed size. One meaning for every kind.
  virtual int64_t storage_bits() const = 0;
  // Stored parameters: in * out for a matrix (quantized or not), fewer for a factorized one.
  virtual int64_t parameter_count() const { return in_features() * out_features(); }
  // The weight as a dense [out, in] matrix (dequantized / multiplied out), for export and analysis.
  virtual at::Tensor dense() const = 0;
  virtual std::string kind() const = 0;
  // Everything needed to rebuild this weight through restore_weight (weight_kinds.h).
  virtual WeightState save() const = 0;
  virtual PruningMask pruning_mask() const { return {}; }
  // What training updates; none for kinds held frozen (integer grids, ggml blocks, Tucker / CP cores).
  virtual std::vector<TrainableTensor> trainable() const { return {}; }
};

// A plain [out, in] matrix in any floating dtype.
class DenseWeight : public LinearWeight {
 public:
  explicit DenseWeight(at::Tensor weight);
  at::Tensor forward(const at::Tensor& x) const override;
  int64_t in_features() const override { return weight_.size(1); }
  int64_t out_features() const override { return weight_.size(0); }
  int64_t storage_bits() const override;
  at::Tensor dense() const override { return weight_; }
  std::string kind() const override { return "dense"; }
  WeightState save() const override;
  std::vector<TrainableTensor> trainable() const override { return {{"", weight_, {}}}; }

 private:
  at::Tensor weight_;
};

struct Linear {
  std::shared_ptr<LinearWeight> weight;
  at::Tensor bias;  // undefined when the layer has none

  at::Tensor forward(const at::Tensor& x) const;
  bool defined() const { return weight != nullptr; }
};

}  // namespace llmpress
