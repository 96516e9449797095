// llama-quantize's per-tensor type selection (llama.cpp src/llama-quant.cpp, formats.md 2.5),
// restricted to dense Llama-family models and the k-quant / legacy / float mixes.
#include "llmpress/quant/type_mix.h"

#include <algorithm>
#include <cctype>
#include <map>
#include <regex>

#include "llmpress/core/error.h"
#include "llmpress/export/ggml_quantize.h"

namespace llmpress {
namespace {

const QuantMix kMixes[] = {
    {"F32", TensorType::F32, 0, false},     {"F16", TensorType::F16, 1, false},
    {"Q4_0", TensorType::Q4_0, 2, true},    {"Q4_1", TensorType::Q4_1, 3, true},
    {"Q8_0", TensorType::Q8_0, 7, true},    {"Q5_0", TensorType::Q5_0, 8, true},
    {"Q5_1", TensorType::Q5_1, 9, true},    {"Q2_K", TensorType::Q2_K, 10, true},
    {"Q3_K_S", TensorType::Q3_K, 11, true}, {"Q3_K_M", TensorType::Q3_K, 12, true},
    {"Q3_K_L", TensorType::Q3_K, 13, true}, {"Q4_K_S", TensorType::Q4_K, 14, true},
    {"Q4_K_M", TensorType::Q4_K, 15, true}, {"Q5_K_S", TensorType::Q5_K, 16, true},
    {"Q5_K_M", TensorType::Q5_K, 17, true}, {"Q6_K", TensorType::Q6_K, 18, true},
};

std::string upper(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return char(std::toupper(c)); });
  return s;
}

bool contains(const std::string& s, const char* part) { return s.find(part) != std::string::npos; }

int64_t block_of(TensorType t) { return tensor_type_info(t).block_elements; }

// llama-quantize sorts tensors by block number, then name; its per-kind counters follow that order.
int64_t layer_of(const std::string& name) {
  if (name.compare(0, 4, "blk.") != 0) return -1;
  return std::atoll(name.c_str() + 4);
}

struct Counters {
  int64_t attn_v = 0, n_attn_v = 0, ffn_down = 0, n_layers = 0;
};

// llama_tensor_get_type's rules for the mixes we support (no MoE, no Falcon).
TensorType rule_type(const std::string& mix, TensorType type, const std::string& name, int64_t row, bool has_output,
                     const ModelConfig& config, Counters& c) {
  const int64_t kv_heads = config.num_kv_heads > 0 ? config.num_kv_heads : config.num_heads;
  const int64_t n_gqa = kv_heads > 0 ? config.num_heads / kv_heads : 1;
  if (name == "output.weight" || (!has_output && name == "token_embd.weight")) {
    if (row % block_of(type) != 0) return TensorType::Q8_0;
    return type == TensorType::Q8_0 ? type : TensorType::Q6_K;
  }
  if (name == "token_embd.weight") return type;
  if (contains(name, "attn_v.weight")) {
    const int64_t i = c.attn_v++;
    if (mix == "Q2_K") type = n_gqa >= 4 ? TensorType::Q4_K : TensorType::Q3_K;
    else if (mix == "Q3_K_M") type = i < 2 ? TensorType::Q5_K : TensorType::Q4_K;
    else if (mix == "Q3_K_L") type = TensorType::Q5_K;
    else if ((mix == "Q4_K_M" || mix == "Q5_K_M") && use_more_bits(i, c.n_attn_v)) type = TensorType::Q6_K;
    else if (mix == "Q4_K_S" && i < 4) type = TensorType::Q5_K;
    // llama.cpp's 70B rule (model type 70B = 80 layers): attn_v is small under GQA, give it more bits.
    if (config.num_layers == 80 && (type == TensorType::Q3_K || type == TensorType::Q4_K)) type = TensorType::Q5_K;
    return type;
  }
  if (contains(name, "ffn_down")) {
    const int64_t i = c.ffn_down++, n = c.n_layers;
    if (mix == "Q2_K") type = TensorType::Q3_K;
    else if (mix == "Q3_K_M") type = i < n / 16 ? TensorType::Q5_K : TensorType::Q4_K;
    else if (mix == "Q3_K_L") type = TensorType::Q5_K;
    else if (mix == "Q4_K_M") { if (use_more_bits(i, n)) type = TensorType::Q6_K; }
    else if (mix == "Q5_K_M" && use_more_bits(i, n)) type = TensorType::Q6_K;
    else if (mix == "Q4_K_S" && i < n / 8) type = TensorType::Q5_K;
    return type;
  }
  if (contains(name, "attn_output.weight")) {
    if (mix == "Q2_K") return TensorType::Q3_K;
    if (mix == "Q3_K_M") return TensorType::Q4_K;
    if (mix == "Q3_K_L") return TensorType::Q5_K;
    return type;
  }
  if (contains(name, "attn_qkv.weight")) {
    if (mix == "Q3_K_M" || mix == "Q3_K_L") return TensorType::Q4_K;
    if (mix == "Q4_K_M") return TensorType::Q5_K;
    if (mix == "Q5_K_M") return TensorType::Q6_K;
  }
  return type;
}

// llama-quantize's tensor_type_fallback for rows that are not whole blocks of `type`.
TensorType fallback_type(TensorType type, int64_t row, std::string& note) {
  TensorType to;
  switch (type) {
    // llama.cpp maps Q2_K/Q3_K to IQ4_NL, which we cannot write; Q4_0 has the same block size
    // and bit rate (newer llama.cpp also uses Q4_0 here).
    case TensorType::Q2_K:
    case TensorType::Q3_K: to = TensorType::Q4_0; break;
    case TensorType::Q4_K: to = TensorType::Q5_0; break;
    case TensorType::Q5_K: to = TensorType::Q5_1; break;
    case TensorType::Q6_K: to = TensorType::Q8_0; break;
    // llama-quantize aborts ("Unsupported tensor size") for legacy types; we store F16 instead.
    default: to = TensorType::F16; break;
  }
  if (row % block_of(to) != 0) to = TensorType::F16;
  note = "rows of " + std::to_string(row) + " are not a multiple of " + std::to_string(block_of(type)) + " (" +
         tensor_type_name(type) + " block); stored " + tensor_type_name(to);
  if (type == TensorType::Q2_K || type == TensorType::Q3_K)
    note += to == TensorType::Q4_0 ? " (llama.cpp: IQ4_NL, which llmpress does not write)" : "";
  return to;
}

bool quantizable(const TensorShape& t) {
  const std::string& n = t.name;
  const bool ends_weight = n.size() >= 6 && n.compare(n.size() - 6, 6, "weight") == 0;
  return ends_weight && t.shape.size() >= 2 && !contains(n, "_norm.weight") && !contains(n, "ffn_gate_inp.weight");
}

struct Override {
  std::regex pattern;
  std::string text;
  TensorType type;
};

std::vector<Override> parse_overrides(const std::vector<std::string>& overrides) {
  std::vector<Override> out;
  for (const std::string& o : overrides) {
    const size_t eq = o.rfind('=');
    if (eq == std::string::npos || eq == 0) throw Error("tensor type override '" + o + "' is not PATTERN=TYPE");
    TensorType type = TensorType::F32;
    try {
      type = ggml_type_from_name(o.substr(eq + 1));  // only types the GGUF writer can encode
    } catch (const Error& e) {
      throw Error("tensor type override '" + o + "': " + e.what());
    }
    try {
      out.push_back({std::regex(o.substr(0, eq)), o, type});
    } catch (const std::regex_error& e) {
      throw Error("tensor type override '" + o + "': bad pattern: " + e.what());
    }
  }
  return out;
}

}  // namespace

bool use_more_bits(int64_t i, int64_t n) { return i < n / 8 || i >= 7 * n / 8 || (i - n / 8) % 3 == 2; }

const QuantMix& quant_mix(const std::string& name) {
  const std::string u = upper(name);
  for (const QuantMix& m : kMixes)
    if (u == m.name) return m;
  std::string known;
  for (const std::string& n : quant_mix_names()) known += (known.empty() ? "" : ", ") + n;
  throw Error("unknown quantization mix '" + name + "' (supported: " + known + ")");
}

std::vector<std::string> quant_mix_names() {
  std::vector<std::string> names;
  for (const QuantMix& m : kMixes) names.push_back(m.name);
  return names;
}

std::vector<TensorTypeChoice> choose_tensor_types(const ModelConfig& config, const std::vector<TensorShape>& tensors,
                                                  const std::string& mix_name, const std::vector<std::string>& overrides) {
  const QuantMix& mix = quant_mix(mix_name);
  const std::vector<Override> rules = parse_overrides(overrides);

  // Visit in llama-quantize's order (layer, then name) so the per-kind counters match.
  std::vector<size_t> order(tensors.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    const int64_t la = layer_of(tensors[a].name), lb = layer_of(tensors[b].name);
    return la != lb ? la < lb : tensors[a].name < tensors[b].name;
  });
  Counters counters;
  counters.n_layers = config.num_layers;
  bool has_output = false;
  for (const TensorShape& t : tensors) {
    if (contains(t.name, "attn_v.weight") || contains(t.name, "attn_qkv.weight")) ++counters.n_attn_v;
    if (t.name == "output.weight") has_output = true;
  }

  std::vector<TensorTypeChoice> out(tensors.size());
  for (size_t idx : order) {
    const TensorShape& t = tensors[idx];
    TensorTypeChoice& choice = out[idx];
    choice.name = t.name;
    if (!quantizable(t)) {
      choice.type = TensorType::F32;
      continue;
    }
    const int64_t row = t.shape.back();
    TensorType type = mix.default_type;
    if (mix.k_rules) type = rule_type(mix.name, type, t.name, row, has_output, config, counters);
    for (const Override& o : rules)
      if (std::regex_search(t.name, o.pattern)) {
        type = o.type;
        choice.note = "override " + o.text;
        break;
      }
    if (row % block_of(type) != 0) {
      std::string note;
      type = fallback_type(type, row, note);
      choice.fallback = true;
      choice.note = choice.note.empty() ? note : choice.note + "; " + note;
    }
    choice.type = type;
  }
  return out;
}

}  // namespace llmpress
