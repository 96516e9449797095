#pragma once
// Helpers shared by the export tests: load a whole checkpoint as NamedTensors; our perplexity of a
// model file under llama-perplexity's convention.
#include <string>
#include <vector>

#include "llmpress/data/text.h"
#include "llmpress/eval/perplexity.h"
#include "llmpress/export/named_tensor.h"
#include "llmpress/io/checkpoint.h"
#include "llmpress/model/transformer.h"
#include "llmpress/tokenizer/tokenizer.h"

namespace llmpress::test {

inline std::vector<NamedTensor> load_all(const Checkpoint& checkpoint) {
  std::vector<NamedTensor> out;
  for (const auto& entry : checkpoint.tensors) out.push_back({entry.first, checkpoint.load(entry.first)});
  return out;
}

// Perplexity of the model at `path` on `text_file` as llama-perplexity computes it (BOS per window,
// second half scored), `chunks` windows of `context` tokens.
inline double llamacpp_style_perplexity(const std::string& path, const std::string& text_file, int context,
                                        int chunks) {
  const Checkpoint checkpoint = open_checkpoint(path);
  const auto tokenizer = load_tokenizer(checkpoint);
  PerplexityOptions options;
  options.context = context;
  options.max_chunks = chunks;
  options.llamacpp = true;
  options.bos_id = tokenizer->bos_id();
  options.progress = false;
  return perplexity(Transformer::load(checkpoint), tokenizer->encode(read_text_file(text_file)), options).perplexity;
}

}  // namespace llmpress::test
