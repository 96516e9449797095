#include "llmpress/export/lora_adapter.h"

#include <nlohmann/json.hpp>

#include <filesystem>
#include <fstream>
#include <map>
#include <regex>
#include <set>

#include "llmpress/core/error.h"
#include "llmpress/core/version.h"
#include "llmpress/export/ggml_quantize.h"
#include "llmpress/export/gguf_writer.h"
#include "llmpress/export/rope_layout.h"
#include "llmpress/export/safetensors_writer.h"
#include "llmpress/io/atomic_file.h"
#include "llmpress/io/checkpoint.h"
#include "llmpress/io/gguf.h"
#include "llmpress/io/mapped_file.h"
#include "llmpress/io/safetensors.h"
#include "llmpress/model/transformer.h"

namespace llmpress {

int64_t LoraAdapter::rank() const {
  if (tensors.empty()) throw Error("the LoRA adapter holds no tensors");
  const int64_t r = tensors.front().a.size(0);
  for (const LoraAdapterTensors& t : tensors)
    if (t.a.size(0) != r || t.b.size(1) != r) throw Error("the LoRA adapter's layers have different ranks");
  return r;
}

namespace {

at::Tensor float_cpu(const at::Tensor& t) { return t.detach().to(at::kCPU, at::kFloat).contiguous(); }

void check_finite(const LoraAdapter& adapter, const std::string& target) {
  for (const LoraAdapterTensors& t : adapter.tensors)
    if (!at::isfinite(t.a).all().item<bool>() || !at::isfinite(t.b).all().item<bool>())
      throw Error(target + ": the adapter of " + t.module + " holds NaN or infinite values; nothing was written");
}

// PEFT's target_modules: the module names when every layer of the model has the same adapted linears,
// otherwise a regex PEFT full-matches against each module's name.
nlohmann::json target_modules(const LoraAdapter& adapter, int64_t num_layers) {
  std::map<std::string, std::set<std::string>> layers_of;  // q_proj -> {"model.layers.0", ...}
  std::set<std::string> layers;
  for (int64_t i = 0; i < num_layers; ++i) layers.insert("model.layers." + std::to_string(i));
  for (const LoraAdapterTensors& t : adapter.tensors) {
    const size_t dot = t.module.rfind('.');
    layers_of[t.module.substr(dot + 1)].insert(t.module.substr(0, t.module.rfind('.', dot - 1)));
  }
  bool uniform = true;
  for (const auto& [name, where] : layers_of) uniform = uniform && where == layers;
  if (uniform) {
    nlohmann::json names = nlohmann::json::array();
    for (const auto& [name, where] : layers_of) names.push_back(name);
    return names;
  }
  std::string pattern;
  for (const LoraAdapterTensors& t : adapter.tensors)
    pattern += (pattern.empty() ? "" : "|") + std::regex_replace(t.module, std::regex("\\."), "\\.");
  return "(" + pattern + ")";
}

}  // namespace

void write_peft_adapter(const std::string& dir, const ModelConfig& config, const LoraAdapter& adapter) {
  const std::string target = "LoRA adapter " + dir;
  check_finite(adapter, target);
  const nlohmann::json peft_config = {
      {"peft_type", "LORA"},
      {"task_type", "CAUSAL_LM"},
      {"base_model_name_or_path", adapter.base_model},
      {"r", adapter.rank()},
      {"lora_alpha", adapter.alpha},
      {"lora_dropout", adapter.dropout},
      {"target_modules", target_modules(adapter, config.num_layers)},
      {"bias", "none"},
      {"fan_in_fan_out", false},
      {"inference_mode", true},
      {"init_lora_weights", true},
      {"use_rslora", false},
      {"use_dora", false},
      {"modules_to_save", nullptr},
      {"layers_to_transform", nullptr},
      {"layers_pattern", nullptr},
      {"rank_pattern", nlohmann::json::object()},
      {"alpha_pattern", nlohmann::json::object()},
      {"revision", nullptr},
  };
  std::vector<NamedTensor> tensors;
  for (const LoraAdapterTensors& t : adapter.tensors) {
    tensors.push_back({"base_model.model." + t.module + ".lora_A.weight", float_cpu(t.a), nullptr});
    tensors.push_back({"base_model.model." + t.module + ".lora_B.weight", float_cpu(t.b), nullptr});
  }
  AtomicDirectory folder(dir);
  write_file_atomic(folder.file("adapter_config.json"), peft_config.dump(2) + "\n");
  write_safetensors(folder.file("adapter_model.safetensors"), tensors);
  // The model card PEFT writes too; its first line marks the folder as ours (check_output_path may replace it).
  write_file_atomic(folder.file("README.md"), std::string(kLlmpressAdapterCardMarker) + "\n# LoRA adapter\n\n" +
                                                  "Base model: " + adapter.base_model + "\n\nWritten by llmpress " +
                                                  version() + ". Load it with PEFT (`PeftModel.from_pretrained`).\n");
  folder.commit();
}

void write_gguf_lora(const std::string& path, const ModelConfig& config, const LoraAdapter& adapter) {
  const std::string target = "GGUF LoRA adapter " + path;
  const bool interleave_rope = config.architecture == "llama";
  if (!interleave_rope && config.architecture != "qwen2")
    throw Error(target + ": architecture '" + config.architecture + "' is not supported (llama, qwen2)");
  check_finite(adapter, target);
  adapter.rank();
  GgufWriter gguf;
  gguf.set_string("general.architecture", config.architecture);
  gguf.set_string("general.type", "adapter");
  gguf.set_string("adapter.type", "lora");
  gguf.set_f32("adapter.lora.alpha", float(adapter.alpha));
  gguf.set_string("llmpress.version", version());
  if (!adapter.base_model.empty()) gguf.set_string("llmpress.base_model", adapter.base_model);
  const int64_t kv_heads = config.num_kv_heads > 0 ? config.num_kv_heads : config.num_heads;
  for (const LoraAdapterTensors& t : adapter.tensors) {
    const std::string name = gguf_tensor_name(t.module + ".weight");
    if (name.empty()) throw Error(target + ": " + t.module + " has no GGUF tensor name");
    at::Tensor b = float_cpu(t.b);
    if (interleave_rope && t.module.find("self_attn.q_proj") != std::string::npos)
      b = half_split_to_interleaved(b, config.num_heads).contiguous();
    if (interleave_rope && t.module.find("self_attn.k_proj") != std::string::npos)
      b = half_split_to_interleaved(b, kv_heads).contiguous();
    for (const auto& [suffix, tensor] : {std::pair{".lora_a", float_cpu(t.a)}, std::pair{".lora_b", b}}) {
      const int64_t row = tensor.size(1);
      gguf.add_tensor_bytes(name + suffix, TensorType::F32, tensor.sizes().vec(),
                            encode_rows(TensorType::F32, tensor.data_ptr<float>(), row, tensor.size(0)));
    }
  }
  gguf.write(path);
}

namespace {

// The adapter's tensors as a Checkpoint holds them, so that load() checks every size and decodes (and
// unpermutes q/k rows) as it does for models; `pairs` maps each module to its (a, b) tensor names.
struct AdapterTensors {
  Checkpoint file;
  std::map<std::string, std::pair<std::string, std::string>> pairs;
};

LoraAdapter assemble(const AdapterTensors& t, double alpha, const std::string& path) {
  LoraAdapter adapter;
  adapter.alpha = alpha;
  for (const auto& [module, names] : t.pairs) {
    if (names.first.empty() || names.second.empty())
      throw file_error(path, "the adapter of " + module + " has only its " + (names.first.empty() ? "B" : "A") + " half");
    const at::Tensor a = t.file.load(names.first), b = t.file.load(names.second);
    if (a.dim() != 2 || b.dim() != 2 || a.size(0) != b.size(1))
      throw file_error(path, "the adapter of " + module + " has factors of shapes that do not chain (A [r, in], B [out, r])");
    adapter.tensors.push_back({module, a, b});
  }
  if (adapter.tensors.empty()) throw file_error(path, "holds no LoRA tensors");
  try {
    adapter.rank();
  } catch (const Error& e) {
    throw file_error(path, e.what());
  }
  return adapter;
}

// Whether `module` (model.layers.3.mlp.down_proj) is a decoder linear of `config`.
bool is_decoder_linear(const std::string& module, const ModelConfig& config) {
  for (int64_t i = 0; i < config.num_layers; ++i)
    for (const std::string& name : DecoderLayer::linear_names())
      if (module == "model.layers." + std::to_string(i) + "." + name) return true;
  return false;
}

nlohmann::json read_small_json(const std::string& path) {
  std::error_code ec;
  const auto size = std::filesystem::file_size(path, ec);
  if (ec) throw file_error(path, "cannot be read");
  if (size > (1u << 20)) throw file_error(path, "is larger than 1 MiB; an adapter config is a few hundred bytes");
  std::ifstream in(path, std::ios::binary);
  const nlohmann::json json = nlohmann::json::parse(in, nullptr, /*allow_exceptions=*/false);
  if (json.is_discarded() || !json.is_object()) throw file_error(path, "is not a JSON object");
  return json;
}

LoraAdapter read_peft(const std::string& dir, const ModelConfig& config) {
  const std::string config_path = dir + "/adapter_config.json";
  const std::string weights = dir + "/adapter_model.safetensors";
  if (!std::filesystem::is_regular_file(config_path))
    throw file_error(dir, "is not a PEFT adapter folder: it has no adapter_config.json");
  if (!std::filesystem::is_regular_file(weights))
    throw file_error(dir, "has no adapter_model.safetensors (adapter_model.bin, a pickle, is not read)");
  const nlohmann::json c = read_small_json(config_path);
  const auto field = [&](const char* key) -> const nlohmann::json& {
    static const nlohmann::json none;
    return c.contains(key) ? c.at(key) : none;
  };
  if (!field("peft_type").is_string() || field("peft_type").get<std::string>() != "LORA")
    throw file_error(config_path, "peft_type must be \"LORA\"");
  if (!field("r").is_number_integer() || field("r").get<int64_t>() < 1)
    throw file_error(config_path, "r must be a positive integer");
  if (!field("lora_alpha").is_number() || field("lora_alpha").get<double>() < 0)
    throw file_error(config_path, "lora_alpha must be a number >= 0");
  for (const char* unsupported : {"use_dora", "use_rslora"})
    if (field(unsupported).is_boolean() && field(unsupported).get<bool>())
      throw file_error(config_path, std::string(unsupported) + " = true is not supported (plain LoRA only)");
  if (field("bias").is_string() && field("bias").get<std::string>() != "none")
    throw file_error(config_path, "bias = \"" + field("bias").get<std::string>() + "\": adapters with biases are not supported");
  for (const char* patterned : {"rank_pattern", "alpha_pattern"})
    if (field(patterned).is_object() && !field(patterned).empty())
      throw file_error(config_path, std::string(patterned) + " (per-layer ranks or alphas) is not supported");

  AdapterTensors t;
  t.file.path = weights;
  const std::regex name("^base_model\\.model\\.(.+)\\.lora_([AB])\\.weight$");
  for (RawTensor& raw : read_safetensors(weights).tensors) {
    std::smatch m;
    if (!std::regex_match(raw.name, m, name) || !is_decoder_linear(m[1], config))
      throw file_error(weights, "tensor " + raw.name + " is not a LoRA factor of a decoder linear of this model");
    auto& pair = t.pairs[m[1]];
    (m[2] == "A" ? pair.first : pair.second) = raw.name;
    t.file.tensors[raw.name] = std::move(raw);
  }
  LoraAdapter adapter = assemble(t, field("lora_alpha").get<double>(), weights);
  if (adapter.rank() != field("r").get<int64_t>())
    throw file_error(weights, "holds rank-" + std::to_string(adapter.rank()) + " factors; adapter_config.json says r = " +
                                  std::to_string(field("r").get<int64_t>()));
  if (field("lora_dropout").is_number()) adapter.dropout = field("lora_dropout").get<double>();
  if (field("base_model_name_or_path").is_string()) adapter.base_model = field("base_model_name_or_path").get<std::string>();
  return adapter;
}

LoraAdapter read_gguf_lora(const std::string& path, const ModelConfig& config) {
  const GgufFile gguf = read_gguf(path);
  const auto text = [&](const std::string& key) {
    const GgufValue* v = gguf.find(key);
    return v && v->type == GgufType::STRING ? v->string_value : std::string();
  };
  if (text("general.type") != "adapter" || text("adapter.type") != "lora")
    throw file_error(path, "is not a LoRA adapter GGUF (general.type \"adapter\", adapter.type \"lora\")");
  if (text("general.architecture") != config.architecture)
    throw file_error(path, "is an adapter for architecture '" + text("general.architecture") + "', the model is " +
                               config.architecture);
  const GgufValue* alpha_value = gguf.find("adapter.lora.alpha");
  if (alpha_value && !alpha_value->is_float()) throw file_error(path, "adapter.lora.alpha is not a number");
  const double alpha = alpha_value ? alpha_value->float_value : 0;

  std::map<std::string, std::string> module_of;  // blk.3.ffn_down.weight -> model.layers.3.mlp.down_proj
  for (int64_t i = 0; i < config.num_layers; ++i)
    for (const std::string& name : DecoderLayer::linear_names()) {
      const std::string module = "model.layers." + std::to_string(i) + "." + name;
      module_of[gguf_tensor_name(module + ".weight")] = module;
    }
  const int64_t kv_heads = config.num_kv_heads > 0 ? config.num_kv_heads : config.num_heads;
  AdapterTensors t;
  t.file.path = path;
  for (const GgufTensorInfo& info : gguf.tensors) {
    const bool is_a = info.name.size() > 7 && info.name.compare(info.name.size() - 7, 7, ".lora_a") == 0;
    const bool is_b = info.name.size() > 7 && info.name.compare(info.name.size() - 7, 7, ".lora_b") == 0;
    const auto module = module_of.find(info.name.substr(0, info.name.size() - 7));
    if (!(is_a || is_b) || module == module_of.end())
      throw file_error(path, "tensor " + info.name + " is not a LoRA factor of a decoder linear of this model");
    if (!tensor_type_info(info.ggml_type) || info.ne.size() != 2)
      throw file_error(path, "tensor " + info.name + " is not a 2-D tensor of a type llmpress reads");
    RawTensor raw;
    raw.name = info.name;
    raw.file = path;
    raw.type = TensorType(info.ggml_type);
    raw.shape = {int64_t(info.ne[1]), int64_t(info.ne[0])};
    raw.data = gguf.file->data() + gguf.data_start + info.offset;
    raw.nbytes = info.nbytes;
    raw.mapping = gguf.file;
    if (is_b && config.architecture == "llama") {  // q/k output rows in the GGUF's interleaved RoPE order
      if (module->second.find("self_attn.q_proj") != std::string::npos) raw.unpermute_rope_heads = config.num_heads;
      if (module->second.find("self_attn.k_proj") != std::string::npos) raw.unpermute_rope_heads = kv_heads;
    }
    auto& pair = t.pairs[module->second];
    (is_a ? pair.first : pair.second) = info.name;
    t.file.tensors[info.name] = std::move(raw);
  }
  LoraAdapter adapter = assemble(t, alpha, path);
  if (alpha == 0) adapter.alpha = double(adapter.rank());  // llama.cpp: no alpha means scale 1
  return adapter;
}

}  // namespace

LoraAdapter read_lora_adapter(const std::string& path, const ModelConfig& config) {
  if (std::filesystem::is_directory(path)) return read_peft(path, config);
  if (!std::filesystem::is_regular_file(path)) throw file_error(path, "no such adapter file or folder");
  return read_gguf_lora(path, config);
}

}  // namespace llmpress
