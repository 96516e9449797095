#include "llmpress/io/checkpoint.h"

#include <filesystem>
#include <cstring>
#include <fstream>

#include <nlohmann/json.hpp>

#include "llmpress/core/error.h"
#include "llmpress/io/gguf.h"
#include "llmpress/io/hf_config.h"
#include "llmpress/io/llama2c.h"
#include "llmpress/io/mapped_file.h"
#include "llmpress/io/safetensors.h"

namespace llmpress {

namespace fs = std::filesystem;

namespace {

std::string shape_string(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

bool starts_with_gguf_magic(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  char magic[4] = {};
  return in.read(magic, 4) && std::string(magic, 4) == "GGUF";
}

bool listed_in_index(const fs::path& index, const std::string& shard) {
  std::ifstream in(index);
  nlohmann::json json = nlohmann::json::parse(in, nullptr, /*allow_exceptions=*/false);
  if (json.is_discarded() || !json.is_object() || !json.contains("weight_map") || !json["weight_map"].is_object()) {
    return false;
  }
  for (const auto& item : json["weight_map"])
    if (item.is_string() && item.get<std::string>() == shard) return true;
  return false;
}

// `path` is a directory with config.json, or one .safetensors file inside such a directory.
Checkpoint open_huggingface(const fs::path& path, const OpenOptions& options) {
  const bool is_dir = fs::is_directory(path);
  const fs::path dir = is_dir ? path : (path.has_parent_path() ? path.parent_path() : fs::path("."));
  const fs::path config = dir / "config.json";
  if (!fs::is_regular_file(config)) {
    throw file_error(path.string(), "no config.json in " + dir.string() + " (a Hugging Face model directory needs one)");
  }
  Checkpoint ck;
  ck.path = path.string();
  ck.format = CheckpointFormat::HuggingFace;
  ck.config = read_hf_config(config.string());
  const fs::path index = dir / "model.safetensors.index.json";
  const fs::path single = dir / "model.safetensors";
  const bool use_index = fs::is_regular_file(index) &&
                         (is_dir || listed_in_index(index, path.filename().string()));
  if (use_index) {
    ck.tensors = read_safetensors_index(index.string());
  } else {
    const fs::path file = is_dir ? single : path;
    if (!fs::is_regular_file(file)) {
      throw file_error(path.string(), "no model.safetensors or model.safetensors.index.json in " + dir.string() +
                                          " (pytorch_model.bin is not supported: save the model with safetensors)");
    }
    SafetensorsFile st = read_safetensors(file.string());
    for (RawTensor& t : st.tensors) {
      std::string name = t.name;
      ck.tensors[name] = std::move(t);
    }
    for (const auto& [k, v] : st.metadata) ck.metadata["safetensors." + k] = v;
  }
  attach_gptq_linears(ck, config.string());
  attach_sparse_linears(ck, config.string());
  if (!options.tokenizer.empty()) {
    ck.tokenizer_file = options.tokenizer;
  } else if (fs::is_regular_file(dir / "tokenizer.model")) {
    ck.tokenizer_file = (dir / "tokenizer.model").string();
  } else if (fs::is_regular_file(dir / "tokenizer.json")) {
    ck.tokenizer_file = (dir / "tokenizer.json").string();
  } else {
    ck.tokenizer_file = find_llama2c_tokenizer(dir.string());  // a llama2.c model converted to a folder
  }
  return ck;
}

// Interleaved (Meta / llama2.c / GGUF llama) q/k rows -> HF half-split rows, per head:
// HF row h*D + t*D/2 + j comes from interleaved row h*D + 2j + t. `flat` holds the rows of `raw`
// in order, each of any width (elements or bytes).
at::Tensor unpermute_rope_rows(const at::Tensor& flat, const RawTensor& raw) {
  const int64_t heads = raw.unpermute_rope_heads;
  const int64_t rows = raw.shape.empty() ? 0 : raw.shape[0];
  if (raw.shape.empty() || raw.shape.size() > 2 || rows % heads != 0 || (rows / heads) % 2 != 0) {
    throw file_error(raw.file, "tensor " + raw.name + " of shape " + shape_string(raw.shape) +
                                   " cannot be split into " + std::to_string(heads) + " RoPE heads");
  }
  const int64_t width = flat.numel() / rows;
  const int64_t head_dim = rows / heads;
  return flat.view({heads, head_dim / 2, 2, width}).transpose(1, 2).contiguous();
}

}  // namespace

const char* checkpoint_format_name(CheckpointFormat format) {
  switch (format) {
    case CheckpointFormat::HuggingFace: return "huggingface";
    case CheckpointFormat::Gguf: return "gguf";
    case CheckpointFormat::Llama2c: return "llama2c";
  }
  return "?";
}

const RawTensor& Checkpoint::tensor(const std::string& name) const {
  auto it = tensors.find(name);
  if (it == tensors.end()) throw file_error(path, "missing tensor " + name);
  return it->second;
}

at::Tensor Checkpoint::load(const std::string& name, const at::Device& device) const {
  const RawTensor& raw = tensor(name);
  const auto gptq = gptq_linears.find(name);
  if (gptq != gptq_linears.end()) return dequantize_gptq(gptq->second).to(device);
  const auto sparse = sparse_linears.find(name);
  if (sparse != sparse_linears.end()) {
    const SparseCompressedLinear& l = sparse->second;
    at::Tensor dense = decompress_sparse(l);
    for (const RawTensor* part : {&l.compressed, &l.bitmask, &l.row_offsets})
      if (part->mapping) part->mapping->release(uint64_t(part->data - part->mapping->data()), part->nbytes);
    return device == at::Device(at::kCPU) ? dense : dense.to(device);
  }
  const int64_t numel = raw.numel();
  if (tensor_bytes(raw.type, uint64_t(numel)) != raw.nbytes) {
    throw file_error(raw.file, "tensor " + name + " has " + std::to_string(raw.nbytes) + " bytes, which does not match its shape");
  }
  at::Tensor flat = at::empty({numel}, at::TensorOptions().dtype(at::kFloat));
  decode_to_f32(raw.type, raw.data, numel, flat.data_ptr<float>());
  if (raw.mapping) raw.mapping->release(uint64_t(raw.data - raw.mapping->data()), raw.nbytes);
  if (raw.unpermute_rope_heads > 0) flat = unpermute_rope_rows(flat, raw);
  at::Tensor result = flat.reshape(raw.shape);
  return device == at::Device(at::kCPU) ? result : result.to(device);
}

at::Tensor Checkpoint::load_bytes(const std::string& name) const {
  const RawTensor& raw = tensor(name);
  if (raw.shape.size() != 2 || raw.shape[0] <= 0 || !raw.data)
    throw file_error(raw.file, "tensor " + name + " is not a stored 2-D tensor");
  if (tensor_bytes(raw.type, uint64_t(raw.numel())) != raw.nbytes)
    throw file_error(raw.file, "tensor " + name + " has " + std::to_string(raw.nbytes) + " bytes, which does not match its shape");
  at::Tensor bytes = at::empty({int64_t(raw.nbytes)}, at::kByte);
  std::memcpy(bytes.data_ptr<uint8_t>(), raw.data, raw.nbytes);
  if (raw.mapping) raw.mapping->release(uint64_t(raw.data - raw.mapping->data()), raw.nbytes);
  if (raw.unpermute_rope_heads > 0) bytes = unpermute_rope_rows(bytes, raw);
  return bytes.reshape({raw.shape[0], int64_t(raw.nbytes) / raw.shape[0]});
}

Checkpoint open_checkpoint(const std::string& path, const OpenOptions& options) {
  const fs::path p(path);
  std::error_code ec;
  if (!fs::exists(p, ec)) throw file_error(path, "does not exist");
  Checkpoint ck;
  if (fs::is_directory(p) || p.extension() == ".safetensors") {
    ck = open_huggingface(p, options);
  } else if (p.filename() == "config.json") {
    ck = open_huggingface(p.has_parent_path() ? p.parent_path() : fs::path("."), options);
  } else if (starts_with_gguf_magic(path)) {
    ck = gguf_to_checkpoint(read_gguf(path));
    if (!options.tokenizer.empty()) ck.tokenizer_file = options.tokenizer;
  } else {
    ck = open_llama2c(path, options.tokenizer);
  }
  check_tensors_against_config(ck);
  return ck;
}

std::map<std::string, std::vector<int64_t>> expected_tensor_shapes(const ModelConfig& c) {
  std::map<std::string, std::vector<int64_t>> shapes;
  const int64_t q_out = c.num_heads * c.head_dim;
  const int64_t kv_out = c.num_kv_heads * c.head_dim;
  shapes["model.embed_tokens.weight"] = {c.vocab_size, c.hidden_size};
  for (int64_t l = 0; l < c.num_layers; ++l) {
    const std::string prefix = "model.layers." + std::to_string(l) + ".";
    shapes[prefix + "input_layernorm.weight"] = {c.hidden_size};
    shapes[prefix + "self_attn.q_proj.weight"] = {q_out, c.hidden_size};
    shapes[prefix + "self_attn.k_proj.weight"] = {kv_out, c.hidden_size};
    shapes[prefix + "self_attn.v_proj.weight"] = {kv_out, c.hidden_size};
    shapes[prefix + "self_attn.o_proj.weight"] = {c.hidden_size, q_out};
    if (c.attention_bias) {
      shapes[prefix + "self_attn.q_proj.bias"] = {q_out};
      shapes[prefix + "self_attn.k_proj.bias"] = {kv_out};
      shapes[prefix + "self_attn.v_proj.bias"] = {kv_out};
    }
    shapes[prefix + "post_attention_layernorm.weight"] = {c.hidden_size};
    shapes[prefix + "mlp.gate_proj.weight"] = {c.intermediate_size, c.hidden_size};
    shapes[prefix + "mlp.up_proj.weight"] = {c.intermediate_size, c.hidden_size};
    shapes[prefix + "mlp.down_proj.weight"] = {c.hidden_size, c.intermediate_size};
  }
  shapes["model.norm.weight"] = {c.hidden_size};
  if (!c.tie_word_embeddings) shapes["lm_head.weight"] = {c.vocab_size, c.hidden_size};
  return shapes;
}

namespace {
bool ends_with_weight(const std::string& name) {
  return name.size() >= 7 && name.compare(name.size() - 7, 7, ".weight") == 0;
}
}  // namespace

void check_tensors_against_config(const Checkpoint& checkpoint) {
  std::vector<std::string> missing;
  std::string wrong_shape;
  for (const auto& [name, shape] : expected_tensor_shapes(checkpoint.config)) {
    auto it = checkpoint.tensors.find(name);
    if (it == checkpoint.tensors.end() && ends_with_weight(name)) {
      // A factorized linear (llmpress lowrank): NAME.weight_u [out, r] and NAME.weight_v [r, in].
      const auto u = checkpoint.tensors.find(name + "_u"), v = checkpoint.tensors.find(name + "_v");
      if (u != checkpoint.tensors.end() && v != checkpoint.tensors.end()) {
        const auto& us = u->second.shape;
        const auto& vs = v->second.shape;
        const bool ok = us.size() == 2 && vs.size() == 2 && shape.size() == 2 && us[0] == shape[0] &&
                        vs[1] == shape[1] && us[1] == vs[0] && us[1] >= 1;
        if (!ok && wrong_shape.empty())
          wrong_shape = "factors " + name + "_u " + shape_string(us) + " and " + name + "_v " + shape_string(vs) +
                        " do not multiply to the shape " + shape_string(shape) + " the config needs";
        continue;
      }
    }
    if (it == checkpoint.tensors.end()) {
      missing.push_back(name);
    } else if (it->second.shape != shape && wrong_shape.empty()) {
      wrong_shape = "tensor " + name + " has shape " + shape_string(it->second.shape) + " but the config needs " +
                    shape_string(shape);
    }
  }
  if (!missing.empty()) {
    std::string list;
    const size_t shown = std::min<size_t>(missing.size(), 8);
    for (size_t i = 0; i < shown; ++i) list += (i ? ", " : "") + missing[i];
    if (missing.size() > shown) list += " and " + std::to_string(missing.size() - shown) + " more";
    throw file_error(checkpoint.path, std::to_string(missing.size()) + " tensor(s) the config needs are missing: " + list);
  }
  if (!wrong_shape.empty()) throw file_error(checkpoint.path, wrong_shape);
}

}  // namespace llmpress
