// llama-quantize's per-tensor type selection (llama.cpp src/llama-quant.cpp, formats.md 2.5),
// restricted to dense Llama-family models: the k-quant, i-quant, ternary, legacy and float mixes.
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
    {"F32", TensorType::F32, 0, false},          {"F16", TensorType::F16, 1, false},
    {"Q2_K", TensorType::Q2_K, 10, true},        {"Q2_K_S", TensorType::Q2_K, 21, true},
    {"Q3_K_S", TensorType::Q3_K, 11, true},      {"Q3_K_M", TensorType::Q3_K, 12, true},
    {"Q3_K_L", TensorType::Q3_K, 13, true},      {"Q4_K_S", TensorType::Q4_K, 14, true},
    {"Q4_K_M", TensorType::Q4_K, 15, true},      {"Q5_K_S", TensorType::Q5_K, 16, true},
    {"Q5_K_M", TensorType::Q5_K, 17, true},      {"Q6_K", TensorType::Q6_K, 18, true},
    {"IQ1_S", TensorType::IQ1_S, 24, true},      {"IQ1_M", TensorType::IQ1_M, 31, true},
    {"IQ2_XXS", TensorType::IQ2_XXS, 19, true},  {"IQ2_XS", TensorType::IQ2_XS, 20, true},
    {"IQ2_S", TensorType::IQ2_XS, 28, true},     {"IQ2_M", TensorType::IQ2_S, 29, true},
    {"IQ3_XXS", TensorType::IQ3_XXS, 23, true},  {"IQ3_XS", TensorType::IQ3_S, 22, true},
    {"IQ3_S", TensorType::IQ3_S, 26, true},      {"IQ3_M", TensorType::IQ3_S, 27, true},
    {"IQ4_NL", TensorType::IQ4_NL, 25, true},    {"IQ4_XS", TensorType::IQ4_XS, 30, true},
    {"TQ1_0", TensorType::TQ1_0, 36, true},      {"TQ2_0", TensorType::TQ2_0, 37, true},
    {"Q4_0", TensorType::Q4_0, 2, true},         {"Q4_1", TensorType::Q4_1, 3, true},
    {"Q5_0", TensorType::Q5_0, 8, true},         {"Q5_1", TensorType::Q5_1, 9, true},
    {"Q8_0", TensorType::Q8_0, 7, true},
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
  int64_t attn_v = 0, n_attn_v = 0, ffn_down = 0, ffn_gate = 0, ffn_up = 0, n_layers = 0;
};

bool is_one_of(const std::string& mix, std::initializer_list<const char*> names) {
  for (const char* n : names)
    if (mix == n) return true;
  return false;
}

// llama_tensor_get_type's rules (no MoE, no Falcon), in its order: the first matching tensor kind decides.
// `has_imatrix`: the blocks are fitted with calibration statistics (llama-quantize --imatrix).
TensorType rule_type(const std::string& mix, TensorType type, const std::string& name, int64_t row, bool has_output,
                     bool has_imatrix, const ModelConfig& config, Counters& c) {
  using T = TensorType;
  const int64_t kv_heads = config.num_kv_heads > 0 ? config.num_kv_heads : config.num_heads;
  const int64_t n_gqa = kv_heads > 0 ? config.num_heads / kv_heads : 1;
  const int64_t n = c.n_layers;
  const bool lowest_iq = is_one_of(mix, {"IQ2_XXS", "IQ2_XS", "IQ1_S", "IQ2_S", "IQ2_M", "IQ1_M"});
  const bool iq2_s_m = is_one_of(mix, {"IQ2_S", "IQ2_M"});
  if (name == "output.weight" || (!has_output && name == "token_embd.weight")) {
    if (row % block_of(type) != 0) return T::Q8_0;
    if (is_one_of(mix, {"IQ2_XXS", "IQ2_XS", "IQ3_XXS", "IQ1_S", "IQ2_S", "IQ2_M", "IQ1_M"})) return T::Q5_K;
    return type == T::Q8_0 ? type : T::Q6_K;
  }
  if (name == "token_embd.weight") {
    if (is_one_of(mix, {"IQ2_XXS", "IQ2_XS", "IQ1_S", "IQ1_M"})) return T::Q2_K;
    if (is_one_of(mix, {"IQ2_S", "IQ2_M", "IQ3_XXS"})) return T::IQ3_S;
    if (is_one_of(mix, {"TQ1_0", "TQ2_0"})) return T::Q4_K;
    return type;
  }
  if (lowest_iq) {
    if (contains(name, "attn_v.weight")) {
      ++c.attn_v;
      return n_gqa >= 4 ? T::Q4_K : iq2_s_m ? T::IQ3_S : T::Q2_K;
    }
    if (contains(name, "ffn_down")) {
      if (c.ffn_down++ < n / 8) type = iq2_s_m ? T::IQ3_S : T::Q2_K;
      return type;
    }
    if (contains(name, "attn_output.weight")) {
      if (is_one_of(mix, {"IQ1_S", "IQ1_M"})) return T::IQ2_XXS;
      if (iq2_s_m) return T::IQ3_S;
    }
    return type;
  }
  if (contains(name, "attn_v.weight")) {
    const int64_t i = c.attn_v++;
    if (mix == "Q2_K") type = n_gqa >= 4 ? T::Q4_K : T::Q3_K;
    else if (mix == "Q2_K_S" && n_gqa >= 4) type = T::Q4_K;
    else if (mix == "IQ3_XXS") type = n_gqa >= 4 ? T::Q4_K : !has_imatrix ? T::IQ3_S : T::IQ3_XXS;
    else if (is_one_of(mix, {"IQ3_XS", "IQ3_S"}) && n_gqa >= 4) type = T::Q4_K;
    else if (mix == "IQ3_M") type = T::Q4_K;
    else if (mix == "Q3_K_M") type = i < 2 ? T::Q5_K : T::Q4_K;
    else if (mix == "Q3_K_L") type = T::Q5_K;
    else if (is_one_of(mix, {"IQ4_NL", "IQ4_XS"}) && n_gqa >= 4) type = T::Q5_K;
    else if (is_one_of(mix, {"Q4_K_M", "Q5_K_M"}) && use_more_bits(i, c.n_attn_v)) type = T::Q6_K;
    else if (mix == "Q4_K_S" && i < 4) type = T::Q5_K;
    // llama.cpp's 70B rule (model type 70B = 80 layers): attn_v is small under GQA, give it more bits.
    if (config.num_layers == 80 && (type == T::Q3_K || type == T::Q4_K)) type = T::Q5_K;
    return type;
  }
  if (contains(name, "attn_k.weight") || contains(name, "attn_q.weight")) {
    if (mix == "IQ3_XS") return T::IQ3_XXS;
    if (mix == "IQ3_XXS") return T::IQ2_S;
    return type;
  }
  if (contains(name, "ffn_down")) {
    const int64_t i = c.ffn_down++;
    if (mix == "Q2_K") type = T::Q3_K;
    else if (mix == "Q2_K_S") { if (i < n / 8) type = T::Q4_K; }
    else if (mix == "IQ3_XXS" && !has_imatrix) type = i < n / 8 ? T::Q4_K : T::Q3_K;
    else if (mix == "Q3_K_M") type = i < n / 16 ? T::Q5_K : T::Q4_K;
    else if (mix == "IQ3_M" && i < n / 8) type = T::Q4_K;
    else if (mix == "Q3_K_L") type = T::Q5_K;
    else if (mix == "Q4_K_M") { if (use_more_bits(i, n)) type = T::Q6_K; }
    else if (i < n / 8 && is_one_of(mix, {"IQ4_NL", "IQ4_XS"}) && !has_imatrix) type = T::Q5_K;
    else if (mix == "Q5_K_M" && use_more_bits(i, n)) type = T::Q6_K;
    else if (mix == "Q4_K_S" && i < n / 8) type = T::Q5_K;
    // With an imatrix, the first ffn_down layers of Q4_0/Q5_0 get the type with a block minimum.
    else if (is_one_of(mix, {"Q4_0", "Q5_0"}) && has_imatrix && i < n / 8) type = mix == "Q4_0" ? T::Q4_1 : T::Q5_1;
    return type;
  }
  if (contains(name, "attn_output.weight")) {
    if (mix == "Q2_K") return T::Q3_K;
    if (mix == "IQ3_XXS") return T::IQ3_S;
    if (mix == "Q3_K_M" || mix == "IQ3_M") return T::Q4_K;
    if (mix == "Q3_K_L") return T::Q5_K;
    return type;
  }
  if (contains(name, "attn_qkv.weight")) {
    if (is_one_of(mix, {"Q3_K_M", "Q3_K_L", "IQ3_M"})) return T::Q4_K;
    if (mix == "Q4_K_M") return T::Q5_K;
    if (mix == "Q5_K_M") return T::Q6_K;
    return type;
  }
  const bool gate = contains(name, "ffn_gate"), up = contains(name, "ffn_up");
  if (gate || up) {
    const int64_t i = gate ? c.ffn_gate++ : c.ffn_up++;
    if (mix == "IQ3_XS" && i >= n / 8 && i < 7 * n / 8) type = T::IQ3_XXS;
  }
  return type;
}

// llama-quantize's fallback for rows that are not whole blocks of `type`.
TensorType fallback_type(TensorType type, int64_t row, std::string& note) {
  using T = TensorType;
  T to;
  switch (type) {
    case T::TQ1_0:
    case T::TQ2_0: to = T::Q4_0; break;
    case T::IQ2_XXS: case T::IQ2_XS: case T::IQ2_S: case T::IQ3_XXS: case T::IQ3_S:
    case T::IQ1_S: case T::IQ1_M: case T::Q2_K: case T::Q3_K: case T::IQ4_XS: to = T::IQ4_NL; break;
    case T::Q4_K: to = T::Q5_0; break;
    case T::Q5_K: to = T::Q5_1; break;
    case T::Q6_K: to = T::Q8_0; break;
    // llama-quantize aborts ("Unsupported tensor size") for legacy types; we store F16 instead.
    default: to = T::F16; break;
  }
  if (row % block_of(to) != 0) to = T::F16;
  note = "rows of " + std::to_string(row) + " are not a multiple of " + std::to_string(block_of(type)) + " (" +
         tensor_type_name(type) + " block); stored " + tensor_type_name(to);
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

std::string mix_list() {
  std::string out;
  for (const QuantMix& m : kMixes)
    if (m.k_rules) out += std::string(out.empty() ? "" : ", ") + m.name;
  return out;
}

std::vector<TensorTypeChoice> choose_tensor_types(const ModelConfig& config, const std::vector<TensorShape>& tensors,
                                                  const std::string& mix_name, const std::vector<std::string>& overrides,
                                                  bool has_imatrix) {
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
    if (mix.k_rules) type = rule_type(mix.name, type, t.name, row, has_output, has_imatrix, config, counters);
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

bool mix_needs_importance(const std::string& mix_name, const std::vector<std::string>& overrides) {
  // llama-quantize refuses these types without an imatrix ("a very low-bit quantization"): ggml cannot
  // encode IQ2_XXS, IQ2_XS and IQ1_S without importance at all, and the others lose too much without it.
  // Mixes are checked by name: on a Llama, IQ1_M's attn_output is IQ2_XXS, IQ3_XXS's attn_q/attn_k IQ2_S.
  const auto low_bit = [](TensorType t) {
    return t == TensorType::IQ2_XXS || t == TensorType::IQ2_XS || t == TensorType::IQ2_S || t == TensorType::IQ1_S ||
           t == TensorType::IQ1_M;
  };
  const QuantMix& mix = quant_mix(mix_name);
  if (low_bit(mix.default_type) || std::string(mix.name) == "IQ3_XXS") return true;
  for (const Override& o : parse_overrides(overrides))
    if (low_bit(o.type)) return true;
  return false;
}

}  // namespace llmpress
