// Training files: JSON-lines records (prompt/response, completion, text, weight) or plain text,
// tokenized and packed into rows.
#include "fuzz_input.h"
#include "fuzz_synthetic.h"
#include "llmpress/train/data.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const bool jsonl = size > 0 && data[0] == '{';  // both readers, chosen as users choose: by the name
  const std::string path = fuzz::write_input(jsonl ? "train.jsonl" : "train.txt", data, size);
  fuzz::expect_clean([&] {
    const llmpress::TrainingData rows = llmpress::TrainingData::load(path, fuzz::synthetic_tokenizer(), 32);
    for (int64_t r = 0; r < rows.rows() && r < 16; ++r) (void)rows.batch({r});
  });
  return 0;
}
