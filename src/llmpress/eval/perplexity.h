#pragma once
#include <ATen/ATen.h>

#include <cstdint>
#include <vector>

namespace llmpress {

class Checkpoint;
class LayerSource;
class Transformer;
struct ModelConfig;

struct PerplexityOptions {
  int64_t context = 512;      // tokens per window
  int64_t max_chunks = -1;    // -1: every whole window of the text
  // llama.cpp's llama-perplexity convention: BOS at the start of the token stream and of every
  // window, and only the second half of each window scored. Otherwise the GPTQ paper's: the
  // plain token stream cut into windows, every predicted token scored.
  bool llamacpp = false;
  int32_t bos_id = 1;
  int64_t batch_tokens = 1024;  // windows evaluated together per forward pass (best measured on 2 cores)
  bool progress = true;
};

struct PerplexityResult {
  double perplexity = 0;
  double uncertainty = 0;  // standard error of the perplexity, as llama.cpp reports it
  double mean_nll = 0;
  int64_t chunks = 0;
  int64_t scored_tokens = 0;
  int64_t evaluated_tokens = 0;  // tokens run through the model
  double seconds = 0;
  double tokens_per_second = 0;  // evaluated tokens per second
};

// Throws Error for a window shorter than 2 or over 4 times the model's context, or --chunks 0.
void check_perplexity_options(const ModelConfig& config, const PerplexityOptions& options);

// `tokens` is the tokenized text without BOS; the convention decides where BOS goes.
PerplexityResult perplexity(const Transformer& model, const std::vector<int32_t>& tokens,
                            const PerplexityOptions& options);

// The same number for a model that does not fit in memory: every window through decoder layer 0, then
// through layer 1, ..., one layer resident at a time (as the calibration engine runs). Holds the hidden
// states of all windows scored (windows x context x hidden floats) instead of the model.
PerplexityResult perplexity_streamed(const LayerSource& source, const std::vector<int32_t>& tokens,
                                     const PerplexityOptions& options, const at::Device& device = at::kCPU);

// Bytes the model takes once loaded (16-bit floats widen to float32; block and GPTQ codes stay as stored).
uint64_t resident_model_bytes(const Checkpoint& checkpoint);

}  // namespace llmpress
