// SentencePiece .model files (protobuf ModelProto: pieces, scores, types, normalizer).
#include "fuzz_tokenizer.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  return fuzz::fuzz_tokenizer_file("tokenizer.model", data, size);
}
