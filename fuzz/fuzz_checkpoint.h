#pragma once
// What every model harness does with a checkpoint that opened: decode every tensor (dequantizing
// blocks, unpacking GPTQ codes, rebuilding sparse layers) and build and run its tokenizer.
#include "fuzz_input.h"
#include "llmpress/io/checkpoint.h"
#include "llmpress/tokenizer/tokenizer.h"

namespace fuzz {

inline void exercise_tokenizer(const llmpress::Tokenizer& tokenizer) {
  const std::vector<int32_t> ids = tokenizer.encode("Once upon a time, 42 cats said \xc3\xa9t\xc3\xa9!\n");
  (void)tokenizer.decode(ids);
  int32_t previous = tokenizer.bos_id();
  for (int32_t id = 0; id < tokenizer.vocab_size() && id < 4096; ++id) {
    (void)tokenizer.token_text(id, previous);
    previous = id;
  }
}

inline void exercise_checkpoint(const llmpress::Checkpoint& checkpoint) {
  for (const auto& entry : checkpoint.tensors) expect_clean([&] { (void)checkpoint.load(entry.first); });
  for (const auto& entry : checkpoint.gptq_linears) expect_clean([&] { (void)llmpress::dequantize_gptq(entry.second); });
  for (const auto& entry : checkpoint.sparse_linears) expect_clean([&] { (void)llmpress::decompress_sparse(entry.second); });
  expect_clean([&] { exercise_tokenizer(*llmpress::load_tokenizer(checkpoint)); });
}

// Opens `path` as a model and exercises what opened.
inline void open_and_exercise(const std::string& path) {
  expect_clean([&] { exercise_checkpoint(llmpress::open_checkpoint(path)); });
}

}  // namespace fuzz
