#pragma once
// The tensors of a model that training updates, by Hugging Face name, and the model copies training
// needs (a student made from a teacher must not share its tensors).
#include <ATen/ATen.h>

#include <string>
#include <vector>

#include "llmpress/model/transformer.h"

namespace llmpress {

struct Parameter {
  std::string name;   // model.layers.0.self_attn.q_proj.weight (low-rank factors: ...weight_u / weight_v)
  at::Tensor tensor;  // the model's own tensor, updated in place
  at::Tensor removed; // pruned positions that must stay exactly zero (undefined: none)
  bool decay = true;  // matrices get weight decay; norms and embeddings do not (unless asked)
};

// Every tensor of `model` training can update. Frozen kinds (integer grids, ggml blocks, Tucker and CP
// cores) contribute none; a tied head is the embedding, listed once.
std::vector<Parameter> model_parameters(const Transformer& model);

// The parameters whose name matches `pattern` (ECMAScript regex, searched; empty = all), marked
// requires_grad; every other tensor of the model is frozen. Error when nothing matches.
std::vector<Parameter> select_trainable(const Transformer& model, const std::string& pattern);

// A copy sharing no tensor with `model` (every weight kind is copied
// through its own save()/restore, so sparse masks and low-rank factors survive).
Transformer deep_copy(const Transformer& model);

// A copy keeping only the decoder layers `keep` (teacher layer indices, in order): a shallower student
// initialised from chosen teacher layers.
Transformer copy_layers(const Transformer& model, const std::vector<int64_t>& keep);

// Holds the dense matrices and embeddings of a frozen model (a teacher) in `dtype` (BFloat16 or Half:
// half the memory; matrix products in that dtype, the residual stream and norms stay float32). Other
// weight kinds stay as they are. Returns the bytes saved.
int64_t hold_weights_in(Transformer& model, at::ScalarType dtype);

// A model of `config` with Hugging Face Llama's initialisation (normal(0, initializer_range) matrices
// and embeddings, norms 1), seeded.
Transformer random_model(const ModelConfig& config, double initializer_range, uint64_t seed);

}  // namespace llmpress
