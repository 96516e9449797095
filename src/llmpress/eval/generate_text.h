#pragma once
// Text in, text out: many prompts generated in length-sorted batches, each cut at its first stop string.
#include <cstdint>
#include <string>
#include <vector>

#include "llmpress/eval/generate.h"

namespace llmpress {

class Transformer;
class Tokenizer;

struct TextGenerationOptions {
  GenerateOptions sampling;         // stop_ids: EOS is added
  std::vector<std::string> until;   // stop strings, cut from the text
  int64_t batch_size = 16;
  std::string label = "generation";  // of the progress line
  bool progress = true;
};

struct GeneratedTexts {
  std::vector<std::string> texts;  // per prompt, in input order
  int64_t tokens = 0;              // generated in all
  double seconds = 0;
};

// Prompt i is tokenized with the tokenizer's BOS rule, keeps its last tokens when it would not leave
// max_new_tokens of the model's context, and samples with seed + i whatever batch it lands in.
GeneratedTexts generate_texts(const Transformer& model, const Tokenizer& tokenizer, const std::vector<std::string>& prompts,
                              const TextGenerationOptions& options);

}  // namespace llmpress
