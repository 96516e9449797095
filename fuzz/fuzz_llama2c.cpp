// llama2.c .bin checkpoints (header and weights; no tokenizer beside them).
#include "fuzz_checkpoint.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  fuzz::open_and_exercise(fuzz::write_input("model.bin", data, size));
  return 0;
}
