#pragma once
// llama2.c checkpoints: the legacy 7-int header .bin (run.c) and version 1 "ak42" (fp32).
#include <string>

namespace llmpress {

class Checkpoint;

// Opens PATH as a llama2.c checkpoint. The tokenizer is `tokenizer` when given, else a single
// tokenizer.bin or tok*.bin beside the checkpoint (empty if none or several).
Checkpoint open_llama2c(const std::string& path, const std::string& tokenizer = "");

// A single tokenizer.bin or tok*.bin in DIRECTORY; empty when there is none or several.
std::string find_llama2c_tokenizer(const std::string& directory);

}  // namespace llmpress
