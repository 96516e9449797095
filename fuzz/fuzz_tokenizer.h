#pragma once
#include "fuzz_checkpoint.h"

namespace fuzz {

// A tokenizer file of the given name (the name picks the kind, as for users' files), loaded for a
// 512-token model and run.
inline int fuzz_tokenizer_file(const char* name, const uint8_t* data, size_t size) {
  const std::string path = write_input(name, data, size);
  expect_clean([&] { exercise_tokenizer(*llmpress::load_tokenizer_file(path, 512)); });
  return 0;
}

}  // namespace fuzz
