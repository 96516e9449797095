#include "llmpress/model/transformer.h"

#include <cmath>

#include "llmpress/core/error.h"
#include "llmpress/io/checkpoint.h"
#include "llmpress/lowrank/low_rank_weight.h"
#include "llmpress/model/sparse_weight.h"
#include "llmpress/quant/ggml_weight.h"
#include "llmpress/quant/int_grid.h"

namespace llmpress {

namespace {

// Hugging Face's llama3 rope scaling: long wavelengths are slowed by `factor`, short ones kept,
// and the band between is interpolated.
std::vector<double> llama3_scaled(std::vector<double> inv_freq, const RopeScaling& s) {
  const double old_context = double(s.original_max_position_embeddings);
  const double low_wavelen = old_context / s.low_freq_factor;
  const double high_wavelen = old_context / s.high_freq_factor;
  for (double& f : inv_freq) {
    const double wavelen = 2 * M_PI / f;
    if (wavelen < high_wavelen) continue;
    if (wavelen > low_wavelen) {
      f /= s.factor;
    } else {
      const double smooth = (old_context / wavelen - s.low_freq_factor) / (s.high_freq_factor - s.low_freq_factor);
      f = (1 - smooth) * f / s.factor + smooth * f;
    }
  }
  return inv_freq;
}

}  // namespace

Rope::Rope(const ModelConfig& config, const at::Device& device) {
  const int64_t half = config.head_dim / 2;
  std::vector<double> inv_freq(half);
  for (int64_t i = 0; i < half; ++i) inv_freq[i] = std::pow(config.rope_theta, -2.0 * double(i) / double(config.head_dim));
  if (config.rope_scaling.type == "llama3") {
    inv_freq = llama3_scaled(inv_freq, config.rope_scaling);
  } else if (config.rope_scaling.type == "linear") {
    for (double& f : inv_freq) f /= config.rope_scaling.factor;
  }
  inv_freq_ = at::tensor(inv_freq, at::kDouble).to(device);
}

std::pair<at::Tensor, at::Tensor> Rope::tables(int64_t start, int64_t length, at::ScalarType dtype) const {
  // Angles in float64 so long positions keep their precision before the cast.
  const at::Tensor positions = at::arange(start, start + length, inv_freq_.options());
  const at::Tensor angles = at::outer(positions, inv_freq_);
  const at::Tensor both = at::cat({angles, angles}, -1);
  return {both.cos().to(dtype), both.sin().to(dtype)};
}

std::pair<at::Tensor, at::Tensor> Rope::tables(const at::Tensor& positions, at::ScalarType dtype) const {
  const at::Tensor angles = positions.to(inv_freq_.options()).unsqueeze(-1) * inv_freq_;  // [B, T, half]
  const at::Tensor both = at::cat({angles, angles}, -1).unsqueeze(1);
  return {both.cos().to(dtype), both.sin().to(dtype)};
}

at::Tensor Rope::apply(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin) {
  const int64_t half = x.size(-1) / 2;
  const at::Tensor rotated = at::cat({-x.narrow(-1, half, half), x.narrow(-1, 0, half)}, -1);
  return x * cos + rotated * sin;
}

at::Tensor rms_norm(const at::Tensor& x, const at::Tensor& weight, double eps) {
  const at::Tensor x32 = x.to(at::kFloat);
  const at::Tensor normed = x32 * at::rsqrt(x32.pow(2).mean(-1, /*keepdim=*/true) + eps);
  return normed.to(x.scalar_type()) * weight;
}

const std::vector<std::vector<std::string>>& linear_groups() {
  static const std::vector<std::vector<std::string>> groups = {
      {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"},
      {"self_attn.o_proj"},
      {"mlp.gate_proj", "mlp.up_proj"},
      {"mlp.down_proj"}};
  return groups;
}

std::pair<int64_t, int64_t> linear_shape(const ModelConfig& c, const std::string& name) {
  const int64_t q = c.num_heads * c.head_dim, kv = c.num_kv_heads * c.head_dim;
  if (name == "self_attn.q_proj") return {q, c.hidden_size};
  if (name == "self_attn.k_proj" || name == "self_attn.v_proj") return {kv, c.hidden_size};
  if (name == "self_attn.o_proj") return {c.hidden_size, q};
  if (name == "mlp.gate_proj" || name == "mlp.up_proj") return {c.intermediate_size, c.hidden_size};
  if (name == "mlp.down_proj") return {c.hidden_size, c.intermediate_size};
  throw Error("no linear layer named '" + name + "' in a decoder layer");
}

const std::vector<std::string>& DecoderLayer::linear_names() {
  static const std::vector<std::string> names = [] {
    std::vector<std::string> all;
    for (const auto& group : linear_groups()) all.insert(all.end(), group.begin(), group.end());
    return all;
  }();
  return names;
}

Linear& DecoderLayer::linear(const std::string& name) {
  return const_cast<Linear&>(static_cast<const DecoderLayer*>(this)->linear(name));
}

const Linear& DecoderLayer::linear(const std::string& name) const {
  if (name == "self_attn.q_proj") return q_proj;
  if (name == "self_attn.k_proj") return k_proj;
  if (name == "self_attn.v_proj") return v_proj;
  if (name == "self_attn.o_proj") return o_proj;
  if (name == "mlp.gate_proj") return gate_proj;
  if (name == "mlp.up_proj") return up_proj;
  if (name == "mlp.down_proj") return down_proj;
  throw Error("no linear layer named '" + name + "' in a decoder layer");
}

void ActivationQuant::check() const {
  for (const auto& [name, bits] : {std::pair{"activation", act_bits}, std::pair{"KV-cache", kv_bits}})
    if (bits != 0 && (bits < 2 || bits > 16))
      throw Error(std::string(name) + " bits must be 0 (off) or 2..16, not " + std::to_string(bits));
}

at::Tensor fake_quantize_absmax(const at::Tensor& x, int bits) {
  const double levels = double((int64_t(1) << (bits - 1)) - 1);
  const at::Tensor f = x.to(at::kFloat);
  const at::Tensor scale = f.detach().abs().amax(-1, /*keepdim=*/true).clamp_min(1e-8) / levels;
  const at::Tensor q = at::clamp(at::round(f.detach() / scale), -levels, levels) * scale;
  return (f + (q - f.detach()).detach()).to(x.scalar_type());  // straight-through
}

void Transformer::set_activation_quant(const ActivationQuant& quant) {
  quant.check();
  for (DecoderLayer& layer : layers) layer.activation_quant = quant;
}

namespace {
// A decoder linear's input as the activation-quantization simulation feeds it.
at::Tensor simulated_input(const ActivationQuant& quant, const at::Tensor& x) {
  return quant.act_bits > 0 ? fake_quantize_absmax(x, quant.act_bits) : x;
}
}  // namespace

at::Tensor DecoderLayer::forward(const at::Tensor& hidden, const ModelConfig& config, const Rope& rope, int64_t start,
                                 LayerCache* cache, const PackedLayout* layout) const {
  return mlp_half(attention_half(hidden, config, rope, start, cache, layout), config);
}

at::Tensor DecoderLayer::attention_half(const at::Tensor& hidden, const ModelConfig& config, const Rope& rope,
                                        int64_t start, LayerCache* cache, const PackedLayout* layout) const {
  if (layout && cache) throw Error("a packed batch cannot use a KV cache");
  const int64_t batch = hidden.size(0), length = hidden.size(1);
  const int64_t heads = config.num_heads, kv_heads = config.num_kv_heads, head_dim = config.head_dim;

  const int kv_bits = activation_quant.kv_bits;
  const auto act = [this](const at::Tensor& t) { return simulated_input(activation_quant, t); };
  const at::Tensor x = act(rms_norm(hidden, input_norm, config.rms_norm_eps));
  at::Tensor q = q_proj.forward(x).view({batch, length, heads, head_dim}).transpose(1, 2);
  at::Tensor k = k_proj.forward(x).view({batch, length, kv_heads, head_dim}).transpose(1, 2);
  at::Tensor v = v_proj.forward(x).view({batch, length, kv_heads, head_dim}).transpose(1, 2);
  const bool padded = cache && cache->padding.defined();
  const at::Tensor padding = padded ? cache->padding.to(hidden.device()).view({batch, 1}) : at::Tensor();
  const at::Tensor slots = at::arange(start, start + length, hidden.options().dtype(at::kLong));
  const auto [cos, sin] = layout   ? rope.tables(layout->positions, q.scalar_type())
                          : padded ? rope.tables((slots.unsqueeze(0) - padding).clamp_min(0), q.scalar_type())
                                   : rope.tables(start, length, q.scalar_type());
  q = Rope::apply(q, cos, sin);
  k = Rope::apply(k, cos, sin);
  if (kv_bits > 0) {  // [B, heads, T, head_dim]: per token and head
    k = fake_quantize_absmax(k, kv_bits);
    v = fake_quantize_absmax(v, kv_bits);
  }

  int64_t total = length;  // key positions visible to this call
  if (cache) {
    if (start + length > cache->keys.size(2)) throw Error("KV cache capacity exceeded");
    cache->keys.narrow(2, start, length).copy_(k);
    cache->values.narrow(2, start, length).copy_(v);
    total = start + length;
    k = cache->keys.narrow(2, 0, total);
    v = cache->values.narrow(2, 0, total);
  }
  // Grouped-query attention: query head h reads kv head h / (heads / kv_heads). Folding the group
  // into the query-length axis avoids materializing repeated keys and values.
  const int64_t group = heads / kv_heads;
  const at::Tensor q_grouped = q.reshape({batch, kv_heads, group * length, head_dim});
  at::Tensor scores = at::matmul(q_grouped, k.transpose(-2, -1)) * (1.0 / std::sqrt(double(head_dim)));
  scores = scores.view({batch, kv_heads, group, length, total});
  // Query i (absolute position start+i) may attend to keys 0 .. start+i.
  const at::Tensor query_pos = slots.unsqueeze(1);
  const at::Tensor key_pos = at::arange(0, total, hidden.options().dtype(at::kLong)).unsqueeze(0);
  at::Tensor blocked = key_pos > query_pos;  // [length, total]: the future
  if (layout) {
    const at::Tensor doc = layout->documents.to(hidden.device());  // [B, T]: other documents are blocked too
    blocked = (blocked | (doc.unsqueeze(2) != doc.unsqueeze(1))).view({batch, 1, 1, length, total});
  } else if (padded) {
    // Padding keys are blocked; a padding query still sees itself so that its row stays finite.
    const at::Tensor pad_key = key_pos.unsqueeze(0) < padding.unsqueeze(2);  // [B, 1, total]
    blocked = (blocked.unsqueeze(0) | (pad_key & (key_pos != query_pos).unsqueeze(0))).view({batch, 1, 1, length, total});
  }
  scores = scores.masked_fill(blocked, -std::numeric_limits<float>::infinity());
  const at::Tensor probs = at::softmax(scores.to(at::kFloat), -1).to(q.scalar_type());
  const at::Tensor attended = at::matmul(probs.view({batch, kv_heads, group * length, total}), v)
                                  .view({batch, heads, length, head_dim})
                                  .transpose(1, 2)
                                  .reshape({batch, length, heads * head_dim});
  return hidden + o_proj.forward(act(attended));
}

at::Tensor DecoderLayer::mlp_half(const at::Tensor& after_attention, const ModelConfig& config) const {
  const auto act = [this](const at::Tensor& t) { return simulated_input(activation_quant, t); };
  const at::Tensor h = act(rms_norm(after_attention, post_attention_norm, config.rms_norm_eps));
  const at::Tensor mlp = down_proj.forward(act(at::silu(gate_proj.forward(h)) * up_proj.forward(h)));
  return after_attention + mlp;
}

namespace {

std::string layer_prefix(int64_t index) { return "model.layers." + std::to_string(index) + "."; }

bool is_float_type(TensorType type) {
  return type == TensorType::F32 || type == TensorType::F16 || type == TensorType::BF16;
}

// The weight kind that holds what the checkpoint stores, without decoding it to float32.
std::shared_ptr<LinearWeight> load_weight(const Checkpoint& checkpoint, const std::string& name,
                                          const at::Device& device) {
  // A factorized checkpoint (llmpress lowrank) stores NAME_u [out, r] and NAME_v [r, in].
  if (!checkpoint.has(name) && checkpoint.has(name + "_u") && checkpoint.has(name + "_v"))
    return std::make_shared<LowRankWeight>(checkpoint.load(name + "_u", device), checkpoint.load(name + "_v", device));
  const auto gptq = checkpoint.gptq_linears.find(name);
  if (gptq != checkpoint.gptq_linears.end()) {
    const GptqPackedLinear& packed = gptq->second;
    const GptqCodes c = unpack_gptq_linear(packed);
    IntGridSpec spec;
    spec.bits = packed.bits;
    spec.symmetric = packed.symmetric;
    spec.group_size = packed.group_size;
    return recognize_pruning(std::make_shared<QuantizedWeight>(c.codes.to(device), c.scales.to(device),
                                                               c.zeros.to(at::kByte).to(device), c.g_idx.to(device),
                                                               spec, c.act_order));
  }
  const RawTensor& raw = checkpoint.tensor(name);
  if (raw.shape.size() == 2 && !is_float_type(raw.type))
    return recognize_pruning(std::make_shared<GgmlWeight>(raw.type, checkpoint.load_bytes(name), raw.shape[1], device));
  return recognize_pruning(std::make_shared<DenseWeight>(checkpoint.load(name, device)));
}

Linear load_linear(const Checkpoint& checkpoint, const std::string& name, const at::Device& device) {
  Linear linear;
  linear.weight = load_weight(checkpoint, name + ".weight", device);
  if (checkpoint.has(name + ".bias")) linear.bias = checkpoint.load(name + ".bias", device);
  return linear;
}

}  // namespace

DecoderLayer Transformer::load_layer(const Checkpoint& checkpoint, int64_t index, const at::Device& device) {
  const std::string prefix = layer_prefix(index);
  DecoderLayer layer;
  layer.input_norm = checkpoint.load(prefix + "input_layernorm.weight", device);
  layer.post_attention_norm = checkpoint.load(prefix + "post_attention_layernorm.weight", device);
  for (const std::string& name : DecoderLayer::linear_names())
    layer.linear(name) = load_linear(checkpoint, prefix + name, device);
  return layer;
}

Transformer Transformer::load_shell(const Checkpoint& checkpoint, const at::Device& device) {
  check_tensors_against_config(checkpoint);
  Transformer model;
  model.config = checkpoint.config;
  model.embed_tokens = checkpoint.load("model.embed_tokens.weight", device);
  model.norm = checkpoint.load("model.norm.weight", device);
  if (checkpoint.has("lm_head.weight") && !checkpoint.config.tie_word_embeddings) {
    model.lm_head = load_linear(checkpoint, "lm_head", device);
  } else {
    model.lm_head.weight = std::make_shared<DenseWeight>(model.embed_tokens);
  }
  model.rope = Rope(model.config, device);
  model.layers.resize(size_t(model.config.num_layers));
  return model;
}

Transformer Transformer::load(const Checkpoint& checkpoint, const at::Device& device) {
  Transformer model = load_shell(checkpoint, device);
  for (int64_t i = 0; i < model.config.num_layers; ++i) model.layers[size_t(i)] = load_layer(checkpoint, i, device);
  return model;
}

at::Tensor Transformer::embed(const at::Tensor& tokens) const {
  if (tokens.numel() > 0) {
    const int64_t lo = tokens.min().item<int64_t>(), hi = tokens.max().item<int64_t>();
    if (lo < 0 || hi >= config.vocab_size)
      throw Error("token id " + std::to_string(lo < 0 ? lo : hi) + " is outside the vocabulary (size " +
                  std::to_string(config.vocab_size) + ")");
  }
  // Embeddings held in a 16-bit dtype still start a float32 residual stream.
  return at::embedding(embed_tokens, tokens).to(at::kFloat);
}

at::Tensor Transformer::head(const at::Tensor& hidden) const {
  return lm_head.forward(rms_norm(hidden, norm, config.rms_norm_eps));
}

at::Tensor Transformer::forward(const at::Tensor& tokens, KVCache* cache, const PackedLayout* layout) const {
  const int64_t start = cache ? cache->length : 0;
  at::Tensor hidden = embed(tokens.to(device()));
  for (size_t i = 0; i < layers.size(); ++i)
    hidden = layers[i].forward(hidden, config, rope, start, cache ? &cache->layers[i] : nullptr, layout);
  if (cache) cache->length += tokens.size(1);
  return head(hidden);
}

KVCache Transformer::make_cache(int64_t batch, int64_t capacity) const {
  KVCache cache;
  cache.capacity = capacity;
  const auto options = embed_tokens.options();
  for (size_t i = 0; i < layers.size(); ++i)
    cache.layers.push_back({at::zeros({batch, config.num_kv_heads, capacity, config.head_dim}, options),
                            at::zeros({batch, config.num_kv_heads, capacity, config.head_dim}, options)});
  return cache;
}

KVCache Transformer::make_cache(const std::vector<int64_t>& padding, int64_t capacity) const {
  KVCache cache = make_cache(int64_t(padding.size()), capacity);
  const at::Tensor pad = at::tensor(at::IntArrayRef(padding), at::kLong).to(device());
  for (LayerCache& layer : cache.layers) layer.padding = pad;
  return cache;
}

int64_t Transformer::parameter_count() const {
  int64_t count = embed_tokens.numel() + norm.numel();
  const bool tied = lm_head.weight->dense().is_same(embed_tokens);
  if (!tied) count += lm_head.weight->in_features() * lm_head.weight->out_features();
  for (const DecoderLayer& layer : layers) {
    count += layer.input_norm.numel() + layer.post_attention_norm.numel();
    for (const std::string& name : DecoderLayer::linear_names()) {
      const Linear& linear = layer.linear(name);
      count += linear.weight->parameter_count();
      if (linear.bias.defined()) count += linear.bias.numel();
    }
  }
  return count;
}

}  // namespace llmpress
