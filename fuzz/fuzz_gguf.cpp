// GGUF models: header, metadata, tensor infos, embedded vocabulary, every tensor's blocks.
#include "fuzz_checkpoint.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  fuzz::open_and_exercise(fuzz::write_input("model.gguf", data, size));
  return 0;
}
