#pragma once
// LoRA adapters in the two files runtimes load them from (formats.md 5):
//   PEFT folder       adapter_config.json + adapter_model.safetensors, tensors named as PEFT saves them
//                     (base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight [r, in], lora_B [out, r])
//   llama.cpp GGUF    general.type "adapter", adapter.type "lora", adapter.lora.alpha; tensors
//                     blk.0.attn_q.weight.lora_a (ne [in, r]) and .lora_b (ne [r, out]), q/k lora_b rows in
//                     the GGUF's interleaved RoPE order (as convert_lora_to_gguf.py permutes them)
// Both scale the update by alpha / r. Written here, and read back (llmpress perplexity --lora).
#include <ATen/ATen.h>

#include <string>
#include <vector>

#include "llmpress/io/model_config.h"

namespace llmpress {

struct LoraAdapterTensors {
  std::string module;  // model.layers.3.mlp.down_proj
  at::Tensor a, b;     // [r, in], [out, r]
};

struct LoraAdapter {
  double alpha = 16;
  double dropout = 0;
  std::string base_model;  // base_model_name_or_path: the model the adapter was trained on
  std::vector<LoraAdapterTensors> tensors;
  int64_t rank() const;    // Error when the tensors disagree (one rank per adapter)
};

// Writes the PEFT folder atomically (an existing adapter folder is replaced only when the new one is
// complete), for a base of `config`.
void write_peft_adapter(const std::string& dir, const ModelConfig& config, const LoraAdapter& adapter);
// Writes the llama.cpp adapter GGUF atomically, for a base of `config`'s architecture (llama, qwen2).
void write_gguf_lora(const std::string& path, const ModelConfig& config, const LoraAdapter& adapter);

// Reads either kind (a folder: PEFT; a file: GGUF) for a base of `config`, every tensor's name and shape
// checked against it. Error naming the file and the problem for anything else (DoRA, rsLoRA, biases,
// embedding adapters, a pair with one half missing).
LoraAdapter read_lora_adapter(const std::string& path, const ModelConfig& config);

}  // namespace llmpress
