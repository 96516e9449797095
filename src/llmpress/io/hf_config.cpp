#include "llmpress/io/hf_config.h"

#include <fstream>
#include <sstream>

#include "llmpress/core/error.h"
#include "llmpress/core/json_excerpt.h"

namespace llmpress {

namespace {

using nlohmann::json;

// A key that is absent or null counts as "not given".
const json* find_value(const json& object, const char* key) {
  auto it = object.find(key);
  if (it == object.end() || it->is_null()) return nullptr;
  return &*it;
}

int64_t get_int(const json& object, const char* key, int64_t fallback, const std::string& source) {
  const json* value = find_value(object, key);
  if (!value) return fallback;
  if (value->is_number_integer()) return value->get<int64_t>();
  // Some configs write integers as 4096.0.
  if (value->is_number_float()) {
    const double d = value->get<double>();
    if (d > -9.2e18 && d < 9.2e18 && d == double(int64_t(d))) return int64_t(d);  // range first: casting 1e45 is UB
  }
  throw file_error(source, std::string(key) + " must be an integer, got " + json_excerpt(*value));
}

double get_double(const json& object, const char* key, double fallback, const std::string& source) {
  const json* value = find_value(object, key);
  if (!value) return fallback;
  if (value->is_number()) return value->get<double>();
  throw file_error(source, std::string(key) + " must be a number, got " + json_excerpt(*value));
}

bool get_bool(const json& object, const char* key, bool fallback, const std::string& source) {
  const json* value = find_value(object, key);
  if (!value) return fallback;
  if (value->is_boolean()) return value->get<bool>();
  throw file_error(source, std::string(key) + " must be true or false, got " + json_excerpt(*value));
}

std::string get_string(const json& object, const char* key, const std::string& fallback, const std::string& source) {
  const json* value = find_value(object, key);
  if (!value) return fallback;
  if (value->is_string()) return value->get<std::string>();
  throw file_error(source, std::string(key) + " must be a string, got " + json_excerpt(*value));
}

// eos_token_id may be a list (Llama 3 instruct): the first id is the one we stop on by default.
int64_t get_token_id(const json& object, const char* key, int64_t fallback, const std::string& source) {
  const json* value = find_value(object, key);
  if (value && value->is_array()) {
    if (value->empty()) return fallback;
    json first = json::object();
    first[key] = value->front();
    return get_int(first, key, fallback, source);
  }
  return get_int(object, key, fallback, source);
}

// Fills rope_theta and rope_scaling from either v5 `rope_parameters` or v4 `rope_theta` + `rope_scaling`.
void parse_rope(const json& config, ModelConfig& out, const std::string& source) {
  out.rope_theta = get_double(config, "rope_theta", out.rope_theta, source);
  const json* params = find_value(config, "rope_parameters");
  const json* scaling = find_value(config, "rope_scaling");
  if (params && !params->is_object()) throw file_error(source, "rope_parameters must be an object");
  if (scaling && !scaling->is_object()) throw file_error(source, "rope_scaling must be an object or null");
  if (params) out.rope_theta = get_double(*params, "rope_theta", out.rope_theta, source);
  const json* rope = params ? params : scaling;
  if (!rope) return;
  std::string type = get_string(*rope, "rope_type", "", source);
  if (type.empty()) type = get_string(*rope, "type", "default", source);
  if (type == "default" || type == "none") return;
  if (type != "linear" && type != "llama3") {
    throw file_error(source, "rope scaling type \"" + type +
                                 "\" is not supported (llmpress handles default, linear and llama3)");
  }
  RopeScaling& rs = out.rope_scaling;
  rs.type = type;
  if (!find_value(*rope, "factor")) throw file_error(source, "rope scaling \"" + type + "\" has no factor");
  rs.factor = get_double(*rope, "factor", rs.factor, source);
  if (type == "llama3") {
    rs.low_freq_factor = get_double(*rope, "low_freq_factor", rs.low_freq_factor, source);
    rs.high_freq_factor = get_double(*rope, "high_freq_factor", rs.high_freq_factor, source);
    rs.original_max_position_embeddings =
        get_int(*rope, "original_max_position_embeddings", rs.original_max_position_embeddings, source);
  }
}

bool contains_string(const json& list, const std::string& value) {
  if (!list.is_array()) return false;
  for (const json& item : list)
    if (item.is_string() && item.get<std::string>() == value) return true;
  return false;
}

}  // namespace

ModelConfig parse_hf_config(const json& config, const std::string& source) {
  if (!config.is_object()) throw file_error(source, "config.json must hold a JSON object");
  ModelConfig out;
  const std::string model_type = get_string(config, "model_type", "llama", source);
  const json* architectures = find_value(config, "architectures");
  if (model_type == "qwen2" || (architectures && contains_string(*architectures, "Qwen2ForCausalLM"))) {
    out.architecture = "qwen2";
  } else if (model_type == "llama" || model_type == "mistral") {
    out.architecture = "llama";
  } else {
    throw file_error(source, "model_type \"" + model_type +
                                 "\" is not supported (llmpress reads llama, mistral and qwen2 models)");
  }

  out.vocab_size = get_int(config, "vocab_size", 0, source);
  out.hidden_size = get_int(config, "hidden_size", 0, source);
  out.intermediate_size = get_int(config, "intermediate_size", 0, source);
  out.num_layers = get_int(config, "num_hidden_layers", 0, source);
  out.num_heads = get_int(config, "num_attention_heads", 0, source);
  out.num_kv_heads = get_int(config, "num_key_value_heads", out.num_heads, source);
  if (out.num_heads <= 0) {
    throw file_error(source, "num_attention_heads is " + std::to_string(out.num_heads) + "; it must be positive");
  }
  if (find_value(config, "head_dim")) {
    out.head_dim = get_int(config, "head_dim", 0, source);
  } else {
    if (out.hidden_size % out.num_heads != 0) {
      throw file_error(source, "num_attention_heads (" + std::to_string(out.num_heads) +
                                   ") does not divide hidden_size (" + std::to_string(out.hidden_size) +
                                   ") and there is no head_dim");
    }
    out.head_dim = out.hidden_size / out.num_heads;
  }
  out.max_position_embeddings = get_int(config, "max_position_embeddings", out.max_position_embeddings, source);
  out.rms_norm_eps = get_double(config, "rms_norm_eps", out.rms_norm_eps, source);
  parse_rope(config, out, source);
  out.tie_word_embeddings = get_bool(config, "tie_word_embeddings", false, source);
  // Qwen2 always has q/k/v biases (hard-wired in its modeling code, not a config flag).
  out.attention_bias = out.architecture == "qwen2" || get_bool(config, "attention_bias", false, source);
  if (out.architecture == "llama" && out.attention_bias) {
    // Llama's attention_bias also adds an o_proj bias, which our tensor set does not carry.
    throw file_error(source, "attention_bias = true for a Llama model (o_proj bias) is not supported");
  }
  if (get_bool(config, "mlp_bias", false, source)) throw file_error(source, "mlp_bias = true is not supported");
  out.bos_token_id = get_token_id(config, "bos_token_id", out.bos_token_id, source);
  out.eos_token_id = get_token_id(config, "eos_token_id", out.eos_token_id, source);
  out.validate(source);
  return out;
}

ModelConfig read_hf_config(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw file_error(path, "cannot open");
  std::stringstream text;
  text << in.rdbuf();
  json config = json::parse(text.str(), nullptr, /*allow_exceptions=*/false);
  if (config.is_discarded()) throw file_error(path, "is not valid JSON");
  return parse_hf_config(config, path);
}

json to_hf_config(const ModelConfig& config) {
  json out = json::object();
  const bool qwen2 = config.architecture == "qwen2";
  out["architectures"] = json::array({qwen2 ? "Qwen2ForCausalLM" : "LlamaForCausalLM"});
  out["model_type"] = qwen2 ? "qwen2" : "llama";
  out["vocab_size"] = config.vocab_size;
  out["hidden_size"] = config.hidden_size;
  out["intermediate_size"] = config.intermediate_size;
  out["num_hidden_layers"] = config.num_layers;
  out["num_attention_heads"] = config.num_heads;
  out["num_key_value_heads"] = config.num_kv_heads;
  out["head_dim"] = config.head_dim;
  out["hidden_act"] = "silu";
  out["max_position_embeddings"] = config.max_position_embeddings;
  out["rms_norm_eps"] = config.rms_norm_eps;
  out["rope_theta"] = config.rope_theta;
  if (config.rope_scaling.type == "none") {
    out["rope_scaling"] = nullptr;
  } else {
    json rs = {{"rope_type", config.rope_scaling.type}, {"factor", config.rope_scaling.factor}};
    if (config.rope_scaling.type == "linear") rs["type"] = "linear";  // pre-4.43 transformers read "type"
    if (config.rope_scaling.type == "llama3") {
      rs["low_freq_factor"] = config.rope_scaling.low_freq_factor;
      rs["high_freq_factor"] = config.rope_scaling.high_freq_factor;
      rs["original_max_position_embeddings"] = config.rope_scaling.original_max_position_embeddings;
    }
    out["rope_scaling"] = rs;
  }
  if (!qwen2) out["attention_bias"] = config.attention_bias;
  out["mlp_bias"] = false;
  out["tie_word_embeddings"] = config.tie_word_embeddings;
  out["bos_token_id"] = config.bos_token_id;
  out["eos_token_id"] = config.eos_token_id;
  out["torch_dtype"] = "float32";
  return out;
}

}  // namespace llmpress
