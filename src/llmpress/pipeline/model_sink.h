#pragma once
// Writing the pipeline's result: every output format from a LayerSource, one decoder layer in
// memory at a time (the writers ask for each tensor when they reach it, and a tensor is produced
// from its layer file then). Formats:
//   gguf        llama.cpp file; ggml-block linears as they are, others encoded to the mix's types
//   hf          Hugging Face folder, every linear dense (dequantized / multiplied out)
//   factorized  Hugging Face folder, low-rank linears as NAME.weight_u / NAME.weight_v
//   gptq        Hugging Face GPTQ checkpoint (qweight / qzeros / scales / g_idx)
//   sparse      compressed-tensors sparse folder: pruned linears as values + bitmask
//               (sparse-24-bitmask when every pruned layer is 2:4, else sparse-bitmask; or named)
// and, for a model with LoRA adapters, the adapter alone (export/lora_adapter_writer.h).
#include <nlohmann/json.hpp>

#include <string>
#include <vector>

#include "llmpress/model/layer_source.h"
#include "llmpress/pipeline/recipe.h"

namespace llmpress {

class Checkpoint;

struct SinkInput {
  const LayerSource& model;   // the finished layers (and the config they have)
  const Checkpoint& origin;   // embeddings, head, tokenizer of the pipeline's input
  OutputSpec output;          // format and type resolved (resolve_output)
  // Keep ggml-block linears as they are even where the output's mix would choose another type
  // (a stage chose their types); otherwise such a linear is re-encoded to the mix's type.
  bool keep_encoded = false;
  std::vector<float> head_importance;  // GGUF: imatrix of output.weight (empty: none)
  std::string recipe_yaml;             // provenance, written into the output
  nlohmann::json recipe_json;
  const Transformer* shell = nullptr;  // embeddings, final norm and head when training changed them
  // The layers carry LoRA adapters (an unmerged lora / qa-lora stage): the output is the adapter, a PEFT
  // folder (hf) or a llama.cpp adapter GGUF (gguf), not the model.
  bool adapter = false;
};

struct LinearSummary {
  std::string name;       // model.layers.3.mlp.down_proj
  std::string kind;       // dense, sparse, int, ggml, lowrank, tucker, cp
  int64_t out = 0, in = 0;
  int64_t parameters = 0;  // stored parameters (fewer for factorized layers)
  int64_t storage_bits = 0;
  int64_t zeros = 0;       // exact zeros of the dense (decoded) matrix
  int64_t n = 0, m = 0;    // the N:M pattern it was pruned to (0:0 none)
  int64_t groups = 0, compliant_groups = 0;  // N:M groups and those that comply
  int64_t rank = 0;        // low-rank layers
  std::string detail;      // "int4 asym g128", "Q4_K", ...
};

struct OutputSummary {
  std::string path, format, description;
  uint64_t bytes = 0;                 // file, or every file of the folder
  std::vector<std::string> notes;     // one line per kind of fallback or conversion
  std::vector<LinearSummary> linears;
  int64_t parameters = 0;             // of the written model
};

// Resolves output.format (from the path: .gguf -> gguf; a GGUF mix as type -> gguf; otherwise
// `fallback_format`) and checks output.type against it. Throws Error naming the recipe line.
OutputSpec resolve_output(OutputSpec output, const std::string& fallback_format);

OutputSummary write_model(const SinkInput& input);

}  // namespace llmpress
