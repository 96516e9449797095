// write_gguf_model: Hugging Face names/layout -> llama.cpp's GGUF conventions (formats.md 1.8-1.13).
#include <cmath>
#include <map>
#include <set>

#include "llmpress/core/error.h"
#include "llmpress/export/ggml_quantize.h"
#include "llmpress/export/gguf_writer.h"
#include "llmpress/export/model_tensors.h"
#include "llmpress/export/rope_layout.h"
#include "llmpress/quant/type_mix.h"

namespace llmpress {
namespace {

constexpr uint32_t kQuantizationVersion = 2;  // GGML_QNT_VERSION
constexpr int32_t kTokenTypeUnused = 5;
constexpr float kPadTokenScore = -1000.0f;  // what llama.cpp's converter gives [PAD{i}] tokens

bool starts_with(const std::string& s, const std::string& prefix) { return s.compare(0, prefix.size(), prefix) == 0; }

// Per-layer suffix -> GGUF suffix.
const std::map<std::string, std::string>& layer_names() {
  static const std::map<std::string, std::string> names = {
      {"input_layernorm.weight", "attn_norm.weight"},
      {"self_attn.q_proj.weight", "attn_q.weight"},
      {"self_attn.k_proj.weight", "attn_k.weight"},
      {"self_attn.v_proj.weight", "attn_v.weight"},
      {"self_attn.o_proj.weight", "attn_output.weight"},
      {"self_attn.q_proj.bias", "attn_q.bias"},
      {"self_attn.k_proj.bias", "attn_k.bias"},
      {"self_attn.v_proj.bias", "attn_v.bias"},
      {"post_attention_layernorm.weight", "ffn_norm.weight"},
      {"mlp.gate_proj.weight", "ffn_gate.weight"},
      {"mlp.up_proj.weight", "ffn_up.weight"},
      {"mlp.down_proj.weight", "ffn_down.weight"},
  };
  return names;
}

// The order tensors appear in the file: embeddings, each layer, final norm, head (as llama.cpp's converter).
std::vector<std::string> hf_export_order(const ModelConfig& config, const std::map<std::string, NamedTensor>& have) {
  static const char* kLayerOrder[] = {
      "input_layernorm.weight", "self_attn.q_proj.weight", "self_attn.q_proj.bias", "self_attn.k_proj.weight",
      "self_attn.k_proj.bias",  "self_attn.v_proj.weight", "self_attn.v_proj.bias", "self_attn.o_proj.weight",
      "post_attention_layernorm.weight", "mlp.gate_proj.weight", "mlp.up_proj.weight", "mlp.down_proj.weight"};
  std::vector<std::string> order = {"model.embed_tokens.weight"};
  for (int64_t l = 0; l < config.num_layers; ++l)
    for (const char* suffix : kLayerOrder) {
      const std::string name = "model.layers." + std::to_string(l) + "." + suffix;
      if (have.count(name)) order.push_back(name);
    }
  order.push_back("model.norm.weight");
  if (have.count("lm_head.weight")) order.push_back("lm_head.weight");
  return order;
}

// llama3 rope scaling is expressed as a per-frequency divisor tensor (formats.md 4.5).
std::vector<float> llama3_rope_divisors(const ModelConfig& config, int64_t head_dim) {
  const RopeScaling& s = config.rope_scaling;
  const double L = double(s.original_max_position_embeddings);
  const double low_wavelen = L / s.low_freq_factor, high_wavelen = L / s.high_freq_factor;
  std::vector<float> divisors;
  for (int64_t i = 0; i < head_dim / 2; ++i) {
    const double inv_freq = std::pow(config.rope_theta, -2.0 * double(i) / double(head_dim));
    const double wavelen = 2.0 * M_PI / inv_freq;
    if (wavelen < high_wavelen) {
      divisors.push_back(1.0f);
    } else if (wavelen > low_wavelen) {
      divisors.push_back(float(s.factor));
    } else {
      const double smooth = (L / wavelen - s.low_freq_factor) / (s.high_freq_factor - s.low_freq_factor);
      divisors.push_back(float(1.0 / ((1.0 - smooth) / s.factor + smooth)));
    }
  }
  return divisors;
}

void write_hparams(GgufWriter& gguf, const ModelConfig& config, int64_t head_dim) {
  const std::string a = config.architecture + ".";
  const int64_t kv_heads = config.num_kv_heads > 0 ? config.num_kv_heads : config.num_heads;
  gguf.set_u32(a + "vocab_size", uint32_t(config.vocab_size));
  gguf.set_u32(a + "context_length", uint32_t(config.max_position_embeddings));
  gguf.set_u32(a + "embedding_length", uint32_t(config.hidden_size));
  gguf.set_u32(a + "block_count", uint32_t(config.num_layers));
  gguf.set_u32(a + "feed_forward_length", uint32_t(config.intermediate_size));
  gguf.set_u32(a + "attention.head_count", uint32_t(config.num_heads));
  gguf.set_u32(a + "attention.head_count_kv", uint32_t(kv_heads));
  gguf.set_f32(a + "rope.freq_base", float(config.rope_theta));
  gguf.set_f32(a + "attention.layer_norm_rms_epsilon", float(config.rms_norm_eps));
  // llama.cpp requires rope.dimension_count == key head size for arch llama.
  gguf.set_u32(a + "rope.dimension_count", uint32_t(head_dim));
  if (head_dim * config.num_heads != config.hidden_size) {
    gguf.set_u32(a + "attention.key_length", uint32_t(head_dim));
    gguf.set_u32(a + "attention.value_length", uint32_t(head_dim));
  }
  if (config.rope_scaling.type == "linear") {
    gguf.set_string(a + "rope.scaling.type", "linear");
    gguf.set_f32(a + "rope.scaling.factor", float(config.rope_scaling.factor));
  }
}

void write_vocab(GgufWriter& gguf, const Vocab& vocab, int64_t vocab_size) {
  if (vocab.model.empty()) throw Error("GGUF export: the vocabulary has no tokenizer model (llama / gpt2)");
  if (int64_t(vocab.tokens.size()) > vocab_size)
    throw Error("GGUF export: the tokenizer has " + std::to_string(vocab.tokens.size()) +
                " tokens but the model's embedding has only " + std::to_string(vocab_size) + " rows");
  std::set<std::string> seen;
  for (const std::string& t : vocab.tokens)
    if (!seen.insert(t).second) throw Error("GGUF export: token '" + t + "' appears twice (llama.cpp refuses that)");

  // Pad to the embedding size the way llama.cpp's converter does.
  std::vector<std::string> tokens = vocab.tokens;
  std::vector<float> scores = vocab.scores;
  std::vector<int32_t> types = vocab.types;
  if (!scores.empty()) scores.resize(tokens.size(), 0.0f);
  if (!types.empty()) types.resize(tokens.size(), 1);
  for (int64_t i = int64_t(tokens.size()); i < vocab_size; ++i) {
    tokens.push_back("[PAD" + std::to_string(i) + "]");
    if (!scores.empty()) scores.push_back(kPadTokenScore);
    if (!types.empty()) types.push_back(kTokenTypeUnused);
  }

  gguf.set_string("tokenizer.ggml.model", vocab.model);
  gguf.set_string("tokenizer.ggml.pre", vocab.pre.empty() ? "default" : vocab.pre);
  gguf.set_array_string("tokenizer.ggml.tokens", tokens);
  if (!scores.empty()) gguf.set_array_f32("tokenizer.ggml.scores", scores);
  if (!types.empty()) gguf.set_array_i32("tokenizer.ggml.token_type", types);
  if (!vocab.merges.empty()) gguf.set_array_string("tokenizer.ggml.merges", vocab.merges);
  if (vocab.bos_id >= 0) gguf.set_u32("tokenizer.ggml.bos_token_id", uint32_t(vocab.bos_id));
  if (vocab.eos_id >= 0) gguf.set_u32("tokenizer.ggml.eos_token_id", uint32_t(vocab.eos_id));
  if (vocab.unk_id >= 0) gguf.set_u32("tokenizer.ggml.unknown_token_id", uint32_t(vocab.unk_id));
  if (vocab.pad_id >= 0) gguf.set_u32("tokenizer.ggml.padding_token_id", uint32_t(vocab.pad_id));
  gguf.set_bool("tokenizer.ggml.add_bos_token", vocab.add_bos);
  gguf.set_bool("tokenizer.ggml.add_eos_token", vocab.add_eos);
  // Only SentencePiece-style vocabularies have a dummy prefix; for gpt2 llama.cpp's default (off) is right.
  if (vocab.model == "llama") gguf.set_bool("tokenizer.ggml.add_space_prefix", vocab.add_space_prefix);
}

}  // namespace

std::string gguf_tensor_name(const std::string& hf_name) {
  if (hf_name == "model.embed_tokens.weight") return "token_embd.weight";
  if (hf_name == "model.norm.weight") return "output_norm.weight";
  if (hf_name == "lm_head.weight") return "output.weight";
  const std::string prefix = "model.layers.";
  if (!starts_with(hf_name, prefix)) return "";
  const size_t dot = hf_name.find('.', prefix.size());
  if (dot == std::string::npos) return "";
  const std::string layer = hf_name.substr(prefix.size(), dot - prefix.size());
  if (layer.empty() || layer.find_first_not_of("0123456789") != std::string::npos) return "";
  const auto it = layer_names().find(hf_name.substr(dot + 1));
  return it == layer_names().end() ? "" : "blk." + layer + "." + it->second;
}

std::vector<GgufTensorChoice> write_gguf_model(const std::string& path, const ModelConfig& config,
                                               const std::vector<NamedTensor>& tensors, const Vocab& vocab,
                                               TensorType type, const GgufModelOptions& options) {
  const std::string target = "GGUF export to " + path;
  const bool interleave_rope = config.architecture == "llama";
  if (!interleave_rope && config.architecture != "qwen2")
    throw Error(target + ": architecture '" + config.architecture + "' is not supported (llama, qwen2)");
  if (config.rope_scaling.type != "none" && config.rope_scaling.type != "linear" && config.rope_scaling.type != "llama3")
    throw Error(target + ": rope scaling '" + config.rope_scaling.type + "' cannot be written");
  const GgmlEncoding& requested = ggml_encoding(type);
  const GgmlEncoding& fallback = ggml_encoding(options.fallback_type);
  const std::map<std::string, NamedTensor> have = check_export_tensors(config, tensors, target);
  const int64_t head_dim = export_head_dim(config);
  const int64_t kv_heads = config.num_kv_heads > 0 ? config.num_kv_heads : config.num_heads;

  GgufWriter gguf;
  gguf.set_string("general.architecture", config.architecture);
  if (!options.name.empty()) gguf.set_string("general.name", options.name);
  gguf.set_u32("general.file_type", options.file_type.value_or(requested.llama_file_type));
  write_hparams(gguf, config, head_dim);
  write_vocab(gguf, vocab, config.vocab_size);
  for (const auto& [key, value] : options.metadata) gguf.set_string(key, value);

  std::vector<GgufTensorChoice> choices;
  bool any_quantized = false;
  for (const std::string& hf_name : hf_export_order(config, have)) {
    const NamedTensor& named = have.at(hf_name);
    const at::Tensor& source = named.tensor;  // shape and dtype (the data may be lazy)
    GgufTensorChoice choice{gguf_tensor_name(hf_name), type, ""};
    const int64_t row = source.size(-1);
    const auto chosen = options.tensor_types.find(choice.gguf_name);
    if (chosen != options.tensor_types.end()) {
      choice.type = chosen->second;
      const GgmlEncoding& e = ggml_encoding(choice.type);
      if (row % e.block_elements != 0)
        throw Error(target + ": " + choice.gguf_name + " has rows of " + std::to_string(row) +
                    ", not a multiple of the " + e.name + " block");
    } else if (source.dim() == 1) {
      choice.type = TensorType::F32;  // norms and biases stay F32, as llama.cpp's converter keeps them
    } else if (row % requested.block_elements != 0) {
      choice.type = options.fallback_type;
      choice.note = std::string("rows of ") + std::to_string(row) + " are not a multiple of " +
                    std::to_string(requested.block_elements) + " (" + requested.name + " block); stored " +
                    fallback.name;
    }
    any_quantized = any_quantized || ggml_encoding(choice.type).quantized;

    int64_t rope_heads = 0;
    if (interleave_rope && hf_name.find("self_attn.q_proj.") != std::string::npos) rope_heads = config.num_heads;
    if (interleave_rope && hf_name.find("self_attn.k_proj.") != std::string::npos) rope_heads = kv_heads;
    const auto pre = options.encoded.find(choice.gguf_name);
    if (pre != options.encoded.end()) {
      const EncodedTensor e = pre->second;
      const int64_t rows = source.numel() / row;
      const std::string what = target + ": the encoded " + choice.gguf_name + " does not hold " + std::to_string(rows) +
                               " rows of " + std::to_string(row) + " " + ggml_encoding(e.type).name + " elements";
      const auto check = [rows, row, what](const EncodedTensor& enc, const at::Tensor& bytes) {
        if (bytes.scalar_type() != at::kByte || bytes.dim() != 2 || bytes.size(0) != rows ||
            uint64_t(bytes.numel()) != ggml_encoded_bytes(enc.type, row, rows))
          throw Error(what);
      };
      if (!e.load) check(e, e.bytes);
      choice.type = e.type;
      any_quantized = any_quantized || ggml_encoding(e.type).quantized;
      gguf.add_tensor(choice.gguf_name, e.type, source.sizes().vec(), [e, check, rope_heads] {
        const at::Tensor bytes = e.data();
        check(e, bytes);
        const at::Tensor t = (rope_heads > 0 ? half_split_to_interleaved(bytes, rope_heads) : bytes).contiguous();
        const uint8_t* p = t.data_ptr<uint8_t>();
        return std::vector<uint8_t>(p, p + t.numel());
      });
      choices.push_back(choice);
      continue;
    }
    const TensorType out_type = choice.type;
    std::vector<float> importance;
    const auto imp = options.importance.find(choice.gguf_name);
    if (imp != options.importance.end()) {
      if (int64_t(imp->second.size()) != row)
        throw Error(target + ": importance for " + choice.gguf_name + " has " + std::to_string(imp->second.size()) +
                    " values, the rows have " + std::to_string(row));
      importance = imp->second;  // columns are not permuted by the RoPE layout change (rows are)
    }
    gguf.add_tensor(choice.gguf_name, out_type, source.sizes().vec(), [named, rope_heads, out_type, importance] {
      at::Tensor t = named.data().to(at::kCPU, at::kFloat).contiguous();
      if (rope_heads > 0) t = half_split_to_interleaved(t, rope_heads);
      const int64_t row_elements = t.size(-1);
      return encode_rows_weighted(out_type, t.data_ptr<float>(), row_elements, t.numel() / row_elements,
                                  importance.empty() ? nullptr : importance.data());
    });
    choices.push_back(choice);
  }
  if (config.rope_scaling.type == "llama3") {
    gguf.add_tensor_bytes("rope_freqs.weight", TensorType::F32, {head_dim / 2}, [&] {
      const std::vector<float> d = llama3_rope_divisors(config, head_dim);
      return encode_rows(TensorType::F32, d.data(), int64_t(d.size()), 1);
    }());
    choices.push_back({"rope_freqs.weight", TensorType::F32, "llama3 rope scaling factors"});
  }
  if (any_quantized) gguf.set_u32("general.quantization_version", kQuantizationVersion);
  gguf.write(path);
  return choices;
}

std::vector<GgufTensorChoice> write_gguf_model_mix(const std::string& path, const ModelConfig& config,
                                                   const std::vector<NamedTensor>& tensors, const Vocab& vocab,
                                                   const std::string& mix_name, const std::vector<std::string>& overrides,
                                                   GgufModelOptions options) {
  const QuantMix& mix = quant_mix(mix_name);
  std::vector<TensorShape> shapes;
  for (const NamedTensor& t : tensors) {
    const std::string name = gguf_tensor_name(t.name);
    if (!name.empty()) shapes.push_back({name, t.tensor.sizes().vec()});
  }
  options.tensor_types.clear();
  std::map<std::string, std::string> notes;
  for (const TensorTypeChoice& c : choose_tensor_types(config, shapes, mix.name, overrides)) {
    options.tensor_types[c.name] = c.type;
    if (!c.note.empty()) notes[c.name] = c.note;
  }
  options.file_type = mix.file_type;
  std::vector<GgufTensorChoice> choices = write_gguf_model(path, config, tensors, vocab, mix.default_type, options);
  for (GgufTensorChoice& c : choices)
    if (notes.count(c.gguf_name)) c.note = notes[c.gguf_name];
  return choices;
}

}  // namespace llmpress
