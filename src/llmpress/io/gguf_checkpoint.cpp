// GGUF (llama / qwen2) -> Checkpoint: config from `<arch>.*` keys, HF tensor names, embedded vocabulary.
#include <algorithm>
#include <cmath>
#include <map>
#include <optional>
#include <regex>

#include "llmpress/core/error.h"
#include "llmpress/io/checkpoint.h"
#include "llmpress/io/gguf.h"
#include "llmpress/io/mapped_file.h"

namespace llmpress {

namespace {

class Keys {
 public:
  Keys(const GgufFile& gguf) : gguf_(gguf), path_(gguf.file->path()) {}

  const GgufValue* find(const std::string& key) const { return gguf_.find(key); }

  // An integer key; a per-layer array is accepted when all its entries agree.
  std::optional<int64_t> integer(const std::string& key) const {
    const GgufValue* v = find(key);
    if (!v) return std::nullopt;
    if (v->is_integer()) return v->int_value;
    if (v->type == GgufType::ARRAY && !v->ints.empty() && v->array_type != GgufType::BOOL) {
      for (int64_t x : v->ints)
        if (x != v->ints.front()) throw file_error(path_, key + " differs between layers, which llmpress does not support");
      return v->ints.front();
    }
    throw file_error(path_, key + " must be an integer, but it is " + gguf_type_name(v->type));
  }
  int64_t required_integer(const std::string& key) const {
    auto v = integer(key);
    if (!v) throw file_error(path_, "metadata key " + key + " is missing");
    return *v;
  }
  std::optional<double> number(const std::string& key) const {
    const GgufValue* v = find(key);
    if (!v) return std::nullopt;
    if (v->is_float()) return v->float_value;
    if (v->is_integer()) return double(v->int_value);
    throw file_error(path_, key + " must be a number, but it is " + gguf_type_name(v->type));
  }
  std::optional<std::string> string(const std::string& key) const {
    const GgufValue* v = find(key);
    if (!v) return std::nullopt;
    if (v->type != GgufType::STRING) throw file_error(path_, key + " must be a STRING, but it is " + gguf_type_name(v->type));
    return v->string_value;
  }
  std::optional<bool> boolean(const std::string& key) const {
    const GgufValue* v = find(key);
    if (!v) return std::nullopt;
    if (v->type == GgufType::BOOL || v->is_integer()) return v->int_value != 0;
    throw file_error(path_, key + " must be a BOOL, but it is " + gguf_type_name(v->type));
  }
  const GgufValue* array(const std::string& key, bool want_strings) const {
    const GgufValue* v = find(key);
    if (!v) return nullptr;
    const bool ok = v->type == GgufType::ARRAY && ((v->array_type == GgufType::STRING) == want_strings);
    if (!ok) throw file_error(path_, key + " must be an array of " + (want_strings ? "strings" : "numbers"));
    return v;
  }

 private:
  const GgufFile& gguf_;
  std::string path_;
};

// GGUF name -> HF name (formats.md 1.10); empty when unknown.
std::string hf_tensor_name(const std::string& name) {
  static const std::map<std::string, std::string> globals = {
      {"token_embd.weight", "model.embed_tokens.weight"},
      {"output_norm.weight", "model.norm.weight"},
      {"output.weight", "lm_head.weight"},
  };
  static const std::map<std::string, std::string> per_layer = {
      {"attn_norm.weight", "input_layernorm.weight"},  {"attn_q.weight", "self_attn.q_proj.weight"},
      {"attn_k.weight", "self_attn.k_proj.weight"},    {"attn_v.weight", "self_attn.v_proj.weight"},
      {"attn_output.weight", "self_attn.o_proj.weight"}, {"attn_q.bias", "self_attn.q_proj.bias"},
      {"attn_k.bias", "self_attn.k_proj.bias"},        {"attn_v.bias", "self_attn.v_proj.bias"},
      {"ffn_norm.weight", "post_attention_layernorm.weight"}, {"ffn_gate.weight", "mlp.gate_proj.weight"},
      {"ffn_up.weight", "mlp.up_proj.weight"},         {"ffn_down.weight", "mlp.down_proj.weight"},
  };
  if (auto it = globals.find(name); it != globals.end()) return it->second;
  static const std::regex layer_re(R"(blk\.(\d+)\.(.+))");
  std::smatch m;
  if (std::regex_match(name, m, layer_re)) {
    if (auto it = per_layer.find(m[2].str()); it != per_layer.end()) {
      return "model.layers." + m[1].str() + "." + it->second;
    }
  }
  return "";
}

Vocab read_vocab(const Keys& keys, const std::string& path, const std::string& model) {
  Vocab vocab;
  vocab.model = model;
  vocab.pre = keys.string("tokenizer.ggml.pre").value_or("default");
  const GgufValue* tokens = keys.array("tokenizer.ggml.tokens", true);
  if (!tokens) throw file_error(path, "tokenizer.ggml.tokens is missing");
  vocab.tokens = tokens->strings;
  const size_t n = vocab.tokens.size();
  if (const GgufValue* scores = keys.array("tokenizer.ggml.scores", false)) {
    if (scores->array_size() != n) throw file_error(path, "tokenizer.ggml.scores and tokenizer.ggml.tokens differ in length");
    for (double s : scores->floats) vocab.scores.push_back(float(s));
    for (int64_t s : scores->ints) vocab.scores.push_back(float(s));
  }
  if (const GgufValue* types = keys.array("tokenizer.ggml.token_type", false)) {
    if (types->ints.size() != n) throw file_error(path, "tokenizer.ggml.token_type must be integers, one per token");
    for (int64_t t : types->ints) vocab.types.push_back(int32_t(t));
  }
  if (const GgufValue* merges = keys.array("tokenizer.ggml.merges", true)) vocab.merges = merges->strings;
  // llama.cpp's defaults per tokenizer model (formats.md 1.9), then the file's overrides.
  if (model == "gpt2") {
    vocab.bos_id = 11;
    vocab.eos_id = 11;
    vocab.add_space_prefix = false;
    vocab.add_bos = vocab.pre == "llama3" || vocab.pre == "llama-v3" || vocab.pre == "llama-bpe";
  } else {
    vocab.bos_id = 1;
    vocab.eos_id = 2;
    vocab.unk_id = 0;
  }
  vocab.bos_id = keys.integer("tokenizer.ggml.bos_token_id").value_or(vocab.bos_id);
  vocab.eos_id = keys.integer("tokenizer.ggml.eos_token_id").value_or(vocab.eos_id);
  vocab.unk_id = keys.integer("tokenizer.ggml.unknown_token_id").value_or(vocab.unk_id);
  vocab.pad_id = keys.integer("tokenizer.ggml.padding_token_id").value_or(vocab.pad_id);
  vocab.add_bos = keys.boolean("tokenizer.ggml.add_bos_token").value_or(vocab.add_bos);
  vocab.add_eos = keys.boolean("tokenizer.ggml.add_eos_token").value_or(vocab.add_eos);
  vocab.add_space_prefix = keys.boolean("tokenizer.ggml.add_space_prefix").value_or(vocab.add_space_prefix);
  return vocab;
}

// llama.cpp expresses llama3 rope scaling only as the per-frequency divisors in rope_freqs.weight.
// We recognise the published parameter set (low 1, high 4, original context 8192) with factor = the
// largest divisor, and refuse anything else rather than run with the wrong frequencies.
RopeScaling llama3_scaling_from_divisors(const std::vector<float>& divisors, double theta, int64_t head_dim,
                                         const std::string& path) {
  RopeScaling rs;
  rs.type = "llama3";
  rs.factor = *std::max_element(divisors.begin(), divisors.end());
  rs.low_freq_factor = 1.0;
  rs.high_freq_factor = 4.0;
  rs.original_max_position_embeddings = 8192;
  const double L = double(rs.original_max_position_embeddings);
  for (size_t i = 0; i < divisors.size(); ++i) {
    const double inv_freq = std::pow(theta, -2.0 * double(i) / double(head_dim));
    const double wavelength = 2 * M_PI / inv_freq;
    double expected;
    if (wavelength < L / rs.high_freq_factor) expected = 1.0;
    else if (wavelength > L / rs.low_freq_factor) expected = rs.factor;
    else {
      const double smooth = (L / wavelength - rs.low_freq_factor) / (rs.high_freq_factor - rs.low_freq_factor);
      expected = 1.0 / ((1 - smooth) / rs.factor + smooth);
    }
    if (std::abs(expected - divisors[i]) > 1e-3 * expected) {
      throw file_error(path, "rope_freqs.weight does not match llama3 rope scaling with low_freq_factor 1, "
                             "high_freq_factor 4 and original context 8192; other rope_freqs are not supported");
    }
  }
  return rs;
}

}  // namespace

Checkpoint gguf_to_checkpoint(const GgufFile& gguf) {
  const std::string& path = gguf.file->path();
  Keys keys(gguf);
  Checkpoint ck;
  ck.path = path;
  ck.format = CheckpointFormat::Gguf;
  const std::string arch = keys.string("general.architecture").value_or("");
  if (arch.empty()) throw file_error(path, "general.architecture is missing");
  if (arch != "llama" && arch != "qwen2") {
    throw file_error(path, "architecture \"" + arch + "\" is not supported (llmpress reads llama and qwen2 GGUFs)");
  }
  for (const auto& [key, value] : gguf.metadata) ck.metadata[key] = value.to_display_string();
  ck.metadata["gguf.version"] = std::to_string(gguf.version);

  ModelConfig& c = ck.config;
  c.architecture = arch;
  c.attention_bias = arch == "qwen2";
  c.hidden_size = keys.required_integer(arch + ".embedding_length");
  c.num_layers = keys.required_integer(arch + ".block_count");
  c.intermediate_size = keys.required_integer(arch + ".feed_forward_length");
  c.num_heads = keys.required_integer(arch + ".attention.head_count");
  c.num_kv_heads = keys.integer(arch + ".attention.head_count_kv").value_or(c.num_heads);
  if (c.num_heads <= 0) throw file_error(path, arch + ".attention.head_count must be positive");
  if (auto key_length = keys.integer(arch + ".attention.key_length")) {
    c.head_dim = *key_length;
  } else {
    if (c.hidden_size % c.num_heads != 0) {
      throw file_error(path, arch + ".attention.head_count (" + std::to_string(c.num_heads) +
                                 ") does not divide " + arch + ".embedding_length (" + std::to_string(c.hidden_size) + ")");
    }
    c.head_dim = c.hidden_size / c.num_heads;
  }
  if (auto value_length = keys.integer(arch + ".attention.value_length"); value_length && *value_length != c.head_dim) {
    throw file_error(path, "attention.value_length differs from key_length, which llmpress does not support");
  }
  c.max_position_embeddings = keys.integer(arch + ".context_length").value_or(c.max_position_embeddings);
  c.rms_norm_eps = keys.number(arch + ".attention.layer_norm_rms_epsilon").value_or(1e-5);
  c.rope_theta = keys.number(arch + ".rope.freq_base").value_or(10000.0);
  const std::string scaling = keys.string(arch + ".rope.scaling.type").value_or("none");
  const double factor = keys.number(arch + ".rope.scaling.factor").value_or(keys.number(arch + ".rope.scale_linear").value_or(1.0));
  if (scaling == "linear" || (scaling == "none" && factor != 1.0 && keys.find(arch + ".rope.scale_linear"))) {
    if (factor != 1.0) {
      c.rope_scaling.type = "linear";
      c.rope_scaling.factor = factor;
    }
  } else if (scaling != "none") {
    throw file_error(path, "rope scaling type \"" + scaling + "\" is not supported (none or linear)");
  }

  if (auto model = keys.string("tokenizer.ggml.model"); model && *model != "none" && *model != "no_vocab") {
    if (*model != "llama" && *model != "gpt2") {
      throw file_error(path, "tokenizer.ggml.model \"" + *model + "\" is not supported (llama or gpt2)");
    }
    ck.vocab = read_vocab(keys, path, *model);
    c.bos_token_id = ck.vocab->bos_id;
    c.eos_token_id = ck.vocab->eos_id;
  }

  const std::string rope_freqs_name = "rope_freqs.weight";
  std::vector<float> rope_divisors;  // from rope_freqs.weight, applied once head_dim is validated
  for (const GgufTensorInfo& info : gguf.tensors) {
    if (!tensor_type_info(info.ggml_type)) {
      throw file_error(path, "tensor " + info.name + " has type " + ggml_type_name(info.ggml_type) +
                                 ", which llmpress cannot decode (it reads " + decodable_type_names() +
                                 "); re-quantize the model to one of those types");
    }
    RawTensor t;
    t.file = path;
    t.type = TensorType(info.ggml_type);
    for (auto it = info.ne.rbegin(); it != info.ne.rend(); ++it) t.shape.push_back(int64_t(*it));
    t.data = gguf.file->data() + gguf.data_start + info.offset;
    t.nbytes = info.nbytes;
    t.mapping = gguf.file;
    if (info.name == rope_freqs_name) {
      if (t.type != TensorType::F32 || t.numel() <= 0) throw file_error(path, "rope_freqs.weight must be a non-empty F32 vector");
      rope_divisors.resize(size_t(t.numel()));
      decode_to_f32(t.type, t.data, t.numel(), rope_divisors.data());
      continue;
    }
    t.name = hf_tensor_name(info.name);
    if (t.name.empty()) throw file_error(path, "tensor " + info.name + " is not part of a Llama/Qwen2 model");
    // llama GGUFs keep Meta's interleaved q/k rows; qwen2 (NEOX RoPE) is already half-split.
    if (arch == "llama") {
      const bool is_q = t.name.find("self_attn.q_proj.") != std::string::npos;
      const bool is_k = t.name.find("self_attn.k_proj.") != std::string::npos;
      if (is_q) t.unpermute_rope_heads = c.num_heads;
      if (is_k) t.unpermute_rope_heads = c.num_kv_heads;
    }
    ck.tensors[t.name] = std::move(t);
  }
  c.tie_word_embeddings = !ck.has("lm_head.weight");
  if (auto vocab_size = keys.integer(arch + ".vocab_size")) {
    c.vocab_size = *vocab_size;
  } else if (ck.has("model.embed_tokens.weight") && ck.tensor("model.embed_tokens.weight").shape.size() == 2) {
    c.vocab_size = ck.tensor("model.embed_tokens.weight").shape[0];
  } else if (ck.vocab) {
    c.vocab_size = int64_t(ck.vocab->tokens.size());
  }
  c.validate(path);
  if (!rope_divisors.empty()) {
    if (int64_t(rope_divisors.size()) != c.head_dim / 2) {
      throw file_error(path, "rope_freqs.weight has " + std::to_string(rope_divisors.size()) +
                                 " entries but head_dim / 2 is " + std::to_string(c.head_dim / 2));
    }
    c.rope_scaling = llama3_scaling_from_divisors(rope_divisors, c.rope_theta, c.head_dim, path);
    c.validate(path);
  }
  return ck;
}

}  // namespace llmpress
