#pragma once
// The Llama-family decoder: embeddings -> decoder layers -> final RMSNorm -> head.
// Every piece is public so the calibration engine can run one decoder layer at a time.
#include <ATen/ATen.h>

#include <string>
#include <vector>

#include "llmpress/io/model_config.h"
#include "llmpress/model/linear.h"

namespace llmpress {

class Checkpoint;

// Several documents packed in the rows of a batch: rope positions restart in each document and a
// token attends only to earlier tokens of its own document. Padding is a document of its own (any id
// no real document uses), so it never reaches real tokens.
struct PackedLayout {
  at::Tensor positions;  // [B, T] int64
  at::Tensor documents;  // [B, T] int64
  bool defined() const { return positions.defined(); }
};

// Rotary position embedding in the Hugging Face half-split layout (rotate_half).
class Rope {
 public:
  Rope() = default;
  Rope(const ModelConfig& config, const at::Device& device);
  // cos and sin tables [T, head_dim] for positions start .. start+T-1, in `dtype`.
  std::pair<at::Tensor, at::Tensor> tables(int64_t start, int64_t length, at::ScalarType dtype) const;
  // Tables [B, 1, T, head_dim] for per-token positions [B, T] (packed documents).
  std::pair<at::Tensor, at::Tensor> tables(const at::Tensor& positions, at::ScalarType dtype) const;
  // x [B, heads, T, head_dim] rotated by the given tables.
  static at::Tensor apply(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin);
  const at::Tensor& inv_freq() const { return inv_freq_; }

 private:
  at::Tensor inv_freq_;  // [head_dim / 2], float32, llama3/linear scaling applied
};

// Keys and values of past positions of one decoder layer, preallocated to a capacity.
struct LayerCache {
  at::Tensor keys;    // [B, kv_heads, capacity, head_dim]
  at::Tensor values;  // same
  // Batched prompts of different lengths are left-padded: row b's first padding[b] slots hold no
  // token (never attended to) and its positions count from slot padding[b]. Undefined: no padding.
  at::Tensor padding;  // [B] int64
};

// Incremental decoding state for all layers.
struct KVCache {
  std::vector<LayerCache> layers;
  int64_t length = 0;    // positions already stored
  int64_t capacity = 0;
};

// The seven linear layers of a decoder layer by Hugging Face name relative to the layer, grouped
// by shared input, in execution order: {q, k, v} <- input norm, {o} <- attention, {gate, up} <-
// post-attention norm, {down} <- gate * up. The one statement of the layer layout: the forward
// pass, the calibration engine (capture per group) and AWQ (folds per group) all read it.
const std::vector<std::vector<std::string>>& linear_groups();
// {out, in} of linear `name` ("self_attn.q_proj", ...) of a decoder layer under `config`.
std::pair<int64_t, int64_t> linear_shape(const ModelConfig& config, const std::string& name);

// Simulated low-bit activations (LLM-QAT's W4A8KV4 study): symmetric round-to-nearest with the absmax
// scale, act_bits on every decoder linear's input per token, kv_bits on the keys (after RoPE) and values
// per token and head, as they enter the KV cache. Rounding passes gradients straight through. 0: off.
struct ActivationQuant {
  int act_bits = 0;
  int kv_bits = 0;
  bool enabled() const { return act_bits > 0 || kv_bits > 0; }
  void check() const;  // Error outside 0 (off) or 2..16
};

// x rounded to `bits` symmetric levels per slice of its last dimension, scale absmax / (2^(bits-1) - 1).
at::Tensor fake_quantize_absmax(const at::Tensor& x, int bits);

struct DecoderLayer {
  at::Tensor input_norm;           // [hidden]
  at::Tensor post_attention_norm;  // [hidden]
  Linear q_proj, k_proj, v_proj, o_proj;
  Linear gate_proj, up_proj, down_proj;
  ActivationQuant activation_quant;  // a simulation setting, not part of the stored model

  // linear_groups() flattened: "self_attn.q_proj", ..., "mlp.down_proj".
  static const std::vector<std::string>& linear_names();
  Linear& linear(const std::string& name);
  const Linear& linear(const std::string& name) const;

  // hidden [B, T, hidden] at positions start .. start+T-1 -> [B, T, hidden].
  // With a cache, the new keys/values are stored at `start` and attention sees all earlier ones.
  // With a packed layout (no cache), positions and attention follow its documents.
  at::Tensor forward(const at::Tensor& hidden, const ModelConfig& config, const Rope& rope, int64_t start,
                     LayerCache* cache = nullptr, const PackedLayout* layout = nullptr) const;
  // forward() in its two residual halves: forward = mlp_half(attention_half(hidden, ...)).
  at::Tensor attention_half(const at::Tensor& hidden, const ModelConfig& config, const Rope& rope, int64_t start,
                            LayerCache* cache = nullptr, const PackedLayout* layout = nullptr) const;
  at::Tensor mlp_half(const at::Tensor& after_attention, const ModelConfig& config) const;
};

class Transformer {
 public:
  ModelConfig config;
  at::Tensor embed_tokens;  // [vocab, hidden]
  std::vector<DecoderLayer> layers;
  at::Tensor norm;          // [hidden]
  Linear lm_head;           // shares embed_tokens when the embeddings are tied
  Rope rope;

  // Loads every tensor (float32) onto `device`.
  static Transformer load(const Checkpoint& checkpoint, const at::Device& device = at::kCPU);
  // Loads embeddings, final norm and head but no decoder layer (for layer-by-layer processing).
  static Transformer load_shell(const Checkpoint& checkpoint, const at::Device& device = at::kCPU);
  static DecoderLayer load_layer(const Checkpoint& checkpoint, int64_t index, const at::Device& device = at::kCPU);

  at::Device device() const { return embed_tokens.device(); }
  at::Tensor embed(const at::Tensor& tokens) const;  // [B, T] int64 -> [B, T, hidden]
  at::Tensor head(const at::Tensor& hidden) const;   // final norm + lm_head -> [B, T, vocab]
  // tokens [B, T] -> logits [B, T, vocab]. With a cache, tokens continue at cache->length.
  at::Tensor forward(const at::Tensor& tokens, KVCache* cache = nullptr, const PackedLayout* layout = nullptr) const;

  KVCache make_cache(int64_t batch, int64_t capacity) const;
  // A cache for rows whose first padding[b] slots are left padding (see LayerCache::padding).
  KVCache make_cache(const std::vector<int64_t>& padding, int64_t capacity) const;
  // Every layer simulates these activation and KV-cache bits from now on (checked).
  void set_activation_quant(const ActivationQuant& quant);
  // Parameter count and storage of the model as it is now (compressed layers count their real size).
  int64_t parameter_count() const;
};

at::Tensor rms_norm(const at::Tensor& x, const at::Tensor& weight, double eps);

}  // namespace llmpress
