// llama2.c tokenizer.bin (max token length, then score, length and bytes of each piece).
#include "fuzz_tokenizer.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  return fuzz::fuzz_tokenizer_file("tokenizer.bin", data, size);
}
