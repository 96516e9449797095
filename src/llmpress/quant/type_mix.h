#pragma once
// Per-tensor ggml types for a llama-quantize style mix (Q4_K_M, Q3_K_S, ...), formats.md 2.5.
// Plain C++, no torch.
#include <cstdint>
#include <string>
#include <vector>

#include "llmpress/io/model_config.h"
#include "llmpress/io/tensor_data.h"

namespace llmpress {

// A named mix: the type most tensors get and the general.file_type it writes (llama_ftype).
struct QuantMix {
  const char* name;
  TensorType default_type;
  uint32_t file_type;
  bool k_rules;  // whether llama-quantize's per-tensor rules apply (every quantized default type)
};

// Throws Error for an unknown mix; names as llama-quantize spells them (case-insensitive):
// Q2_K, Q2_K_S, Q3_K_S, Q3_K_M, Q3_K_L, Q4_K_S, Q4_K_M, Q5_K_S, Q5_K_M, Q6_K, IQ1_S, IQ1_M, IQ2_XXS, IQ2_XS,
// IQ2_S, IQ2_M, IQ3_XXS, IQ3_XS, IQ3_S, IQ3_M, IQ4_NL, IQ4_XS, TQ1_0, TQ2_0, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, F16, F32.
const QuantMix& quant_mix(const std::string& name);
std::vector<std::string> quant_mix_names();
std::string mix_list();  // "Q2_K, Q2_K_S, ..." without the float mixes, for help texts

struct TensorShape {
  std::string name;            // GGUF name (blk.N.attn_v.weight, output.weight, ...)
  std::vector<int64_t> shape;  // PyTorch order: the row length (ggml ne[0]) is the last dimension
};

struct TensorTypeChoice {
  std::string name;
  TensorType type = TensorType::F32;
  bool fallback = false;  // the row length did not fit the chosen block, a wider-compatible type was used
  std::string note;       // why the type differs from the rule's choice (fallback, override), else empty
};

// Types for `tensors` (in any order) under `mix`, as llama-quantize (without --pure) would choose
// them for a dense Llama-family model. `overrides` are "REGEX=TYPE" strings matched with
// regex_search against the GGUF name, first match wins (llama-quantize --tensor-type); they
// replace the mix's choice before the block-size fallback. Tensors llama-quantize never
// quantizes (1-D, *_norm.weight, not ending in "weight") stay F32. `has_imatrix`: the linears are
// quantized with calibration statistics (llama-quantize --imatrix; a few rules of IQ3_XXS, IQ4_NL,
// IQ4_XS, Q4_0 and Q5_0 depend on it).
std::vector<TensorTypeChoice> choose_tensor_types(const ModelConfig& config, const std::vector<TensorShape>& tensors,
                                                  const std::string& mix, const std::vector<std::string>& overrides = {},
                                                  bool has_imatrix = false);

// Whether the mix (with its overrides) gives linears a type llama-quantize refuses to write without an
// imatrix (IQ1_S, IQ1_M, IQ2_XXS, IQ2_XS, IQ2_S): such a mix needs calibration.
bool mix_needs_importance(const std::string& mix, const std::vector<std::string>& overrides = {});

// llama-quantize's layer selector for the _M mixes: the first and last eighth and every third layer between.
bool use_more_bits(int64_t i, int64_t n);

}  // namespace llmpress
