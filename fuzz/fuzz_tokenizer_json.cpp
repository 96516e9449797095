// Hugging Face tokenizer.json (byte-level BPE: vocab, merges, added tokens, pre-tokenizer).
#include "fuzz_tokenizer.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  return fuzz::fuzz_tokenizer_file("tokenizer.json", data, size);
}
