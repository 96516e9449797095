// llama.cpp's published tokenizer tests: vocabulary-only GGUF files with inputs (.inp) and the
// token ids its authors produced with the Hugging Face tokenizers (.out). They are not committed
// here; extract them from a llama.cpp clone and point LLMPRESS_LLAMACPP_VOCAB_DIR at the folder:
//
//   mkdir -p /tmp/llamacpp-vocab && for f in gpt-2 llama-spm llama-bpe qwen2; do for e in gguf gguf.inp gguf.out; do git -C LLAMA_CPP_REPO show HEAD:models/ggml-vocab-$f.$e > /tmp/llamacpp-vocab/ggml-vocab-$f.$e || rm -f /tmp/llamacpp-vocab/ggml-vocab-$f.$e; done; done
//
// (the llama-bpe and qwen2 .gguf files are large and may be absent from a snapshot; those
// tests skip and only their .inp/.out are used by the pre-tokenizer tests.)
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>

#include "llmpress/tokenizer/tokenizer.h"
#include "tokenizer_test_util.h"

namespace llmpress {
namespace {

std::string vocab_dir() {
  const char* dir = std::getenv("LLMPRESS_LLAMACPP_VOCAB_DIR");
  return dir ? dir : "";
}

#define REQUIRE_VOCAB_FILE(name)                                                                        \
  do {                                                                                                  \
    if (vocab_dir().empty())                                                                            \
      GTEST_SKIP() << "set LLMPRESS_LLAMACPP_VOCAB_DIR to a folder with llama.cpp's models/" name       \
                      "(.inp/.out) (see the comment at the top of this file)";                          \
    if (!std::filesystem::exists(vocab_dir() + "/" name) || std::filesystem::file_size(vocab_dir() + "/" name) == 0) \
      GTEST_SKIP() << vocab_dir() << "/" name << " is missing";                                        \
  } while (0)

std::string describe(const std::vector<int32_t>& ids) {
  std::string out;
  for (int32_t id : ids) out += " " + std::to_string(id);
  return out;
}

void expect_llamacpp_cases(const std::string& name, size_t minimum_cases) {
  const std::string base = vocab_dir() + "/" + name;
  const Vocab vocab = test::read_gguf_vocab(base);
  const auto tokenizer = tokenizer_from_vocab(vocab, base);
  const auto cases = test::read_vocab_test_cases(base + ".inp", base + ".out");
  ASSERT_GE(cases.size(), minimum_cases) << "could not read " << base << ".inp/.out";
  for (const auto& test_case : cases) {
    const std::vector<int32_t> ids = tokenizer->encode(test_case.text);
    EXPECT_EQ(describe(ids), describe(test_case.ids)) << "input: \"" << test_case.text << "\"";
    EXPECT_EQ(tokenizer->decode(ids), test_case.text) << "round trip of \"" << test_case.text << "\"";
  }
}

TEST(TokenizerLlamaCppVocab, Gpt2ByteLevelBpe) {
  REQUIRE_VOCAB_FILE("ggml-vocab-gpt-2.gguf");
  expect_llamacpp_cases("ggml-vocab-gpt-2.gguf", 40);
}

TEST(TokenizerLlamaCppVocab, LlamaSpmScoreMerge) {
  REQUIRE_VOCAB_FILE("ggml-vocab-llama-spm.gguf");
  expect_llamacpp_cases("ggml-vocab-llama-spm.gguf", 40);
}

TEST(TokenizerLlamaCppVocab, Llama3Bpe) {
  REQUIRE_VOCAB_FILE("ggml-vocab-llama-bpe.gguf");
  expect_llamacpp_cases("ggml-vocab-llama-bpe.gguf", 40);
}

TEST(TokenizerLlamaCppVocab, Qwen2Bpe) {
  REQUIRE_VOCAB_FILE("ggml-vocab-qwen2.gguf");
  expect_llamacpp_cases("ggml-vocab-qwen2.gguf", 40);
}

TEST(TokenizerLlamaCppVocab, GgufVocabRoundTripsThroughToVocab) {
  REQUIRE_VOCAB_FILE("ggml-vocab-gpt-2.gguf");
  const std::string base = vocab_dir() + "/ggml-vocab-gpt-2.gguf";
  const Vocab vocab = test::read_gguf_vocab(base);
  const auto tokenizer = tokenizer_from_vocab(vocab, base);
  const Vocab back = tokenizer->to_vocab();
  EXPECT_EQ(back.model, "gpt2");
  EXPECT_EQ(back.pre, "gpt-2");
  EXPECT_EQ(back.tokens, vocab.tokens);
  EXPECT_EQ(back.merges, vocab.merges);
}

}  // namespace
}  // namespace llmpress
