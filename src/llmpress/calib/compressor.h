#pragma once
// A compression method that rewrites one linear layer at a time from statistics of its input
// (quantizers, pruners, low-rank factorizations). One algorithm per file behind this interface;
// the sequential engine (engine.h) drives it.
#include <map>
#include <memory>
#include <string>

#include "llmpress/calib/observers.h"
#include "llmpress/model/linear.h"
#include "llmpress/model/transformer.h"

namespace llmpress {

class Compressor {
 public:
  virtual ~Compressor() = default;
  // Short description for logs and for checking that a resumed job uses the same method.
  virtual std::string describe() const = 0;
  virtual StatsRequest needs() const = 0;
  // `name` is the Hugging Face name without ".weight" ("model.layers.3.self_attn.q_proj").
  // Returns the replacement weight (it may return linear.weight unchanged). Must not modify
  // `stats`: layers that share an input share it.
  virtual std::shared_ptr<LinearWeight> compress(const std::string& name, const Linear& linear,
                                                 const InputStats& stats) = 0;

  // Layer-level rewriting (AWQ). When prepares_layers() is true, the engine captures the input
  // statistics of every group of linear_groups() on the dense decoder layer and calls
  // prepare_layer once, before any linear layer of it is compressed; it may rewrite the layer
  // without changing its function (AWQ scales input channels and folds the inverse into the
  // preceding norm or linear layer). The groups' statistics are captured again afterwards.
  virtual bool prepares_layers() const { return false; }
  virtual void prepare_layer(int64_t layer_index, DecoderLayer& layer, const ModelConfig& config,
                             const std::vector<InputStats>& group_stats) {}

  // Layer-level training (EfficientQAT's Block-AP). When trains_layers() is true, the engine also
  // carries the hidden states of the uncompressed model: it runs each layer as loaded on them (the
  // targets, which are also the next layer's uncompressed inputs), compresses its linear layers, then
  // calls train_layer with the layer, its own inputs (through the compressed earlier layers) and the
  // targets, [nsamples, seqlen, hidden] each. The layer's outputs are computed after it returns.
  virtual bool trains_layers() const { return false; }
  virtual void train_layer(int64_t layer_index, DecoderLayer& layer, const Transformer& shell, const at::Tensor& inputs,
                           const at::Tensor& targets) {}
};

}  // namespace llmpress
