// stories260K's tokenizer forms must agree: tok512.model run by libsentencepiece's spm_encode
// program (the independent reference; run as a separate process because libsentencepiece cannot
// share a process with libtorch, see sentencepiece_tokenizer.h), and our score-merge
// implementation on tok512.model, tok512.bin (llama2.c format) and the vocabulary embedded in
// stories260K-F32.gguf.
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>

#include "../test_util.h"
#include "llmpress/core/error.h"
#include "llmpress/io/checkpoint.h"
#include "llmpress/tokenizer/llama2c_tokenizer_file.h"
#include "llmpress/tokenizer/score_merge_tokenizer.h"
#include "llmpress/tokenizer/sentencepiece_tokenizer.h"
#include "tokenizer_test_util.h"

namespace llmpress {
namespace {

constexpr int64_t kStoriesVocab = 512;

std::string stories(const std::string& name) { return test::shared_path("models/stories260K/" + name); }

// Lines libsentencepiece's normalizer leaves alone: printable ASCII (NFKC-invariant), no runs of
// spaces, no leading or trailing space.
bool normalizer_invariant(const std::string& line) {
  if (line.empty() || line.front() == ' ' || line.back() == ' ') return false;
  for (size_t i = 0; i < line.size(); ++i) {
    const auto c = static_cast<unsigned char>(line[i]);
    if (c < 0x20 || c > 0x7E) return false;
    if (c == ' ' && i > 0 && line[i - 1] == ' ') return false;
  }
  return true;
}

// Ids from `spm_encode --output_format=id`, one line of ids per input line; empty when the
// program is not installed (Debian package sentencepiece).
std::vector<std::vector<int32_t>> spm_encode_reference(const std::string& model, const std::vector<std::string>& lines) {
  if (std::system("command -v spm_encode > /dev/null 2>&1") != 0) return {};
  test::TempDir dir;
  {
    std::ofstream input(dir.file("in.txt"));
    for (const std::string& line : lines) input << line << "\n";
  }
  const std::string command = "spm_encode --model='" + model + "' --output_format=id < '" + dir.file("in.txt") +
                              "' > '" + dir.file("out.txt") + "' 2> /dev/null";
  if (std::system(command.c_str()) != 0) return {};
  std::vector<std::vector<int32_t>> ids;
  std::ifstream output(dir.file("out.txt"));
  for (std::string line; std::getline(output, line);) {
    std::istringstream stream(line);
    ids.emplace_back();
    for (int32_t id; stream >> id;) ids.back().push_back(id);
  }
  return ids;
}

#define REQUIRE_SPM_ENCODE(ids, lines)                                                          \
  do {                                                                                          \
    if ((ids).size() != (lines).size())                                                         \
      GTEST_SKIP() << "needs the spm_encode program (Debian package sentencepiece) as reference"; \
  } while (0)

std::vector<std::string> eval_lines(size_t count) {
  std::ifstream file(test::shared_path("data/tinystories-eval.txt"));
  std::vector<std::string> lines;
  for (std::string line; lines.size() < count && std::getline(file, line);)
    if (normalizer_invariant(line)) lines.push_back(line);
  return lines;
}

TEST(TokenizerStories, Llama2cFileMatchesReadmeFacts) {
  LLMPRESS_REQUIRE_SHARED("models/stories260K/tok512.bin");
  // Facts from models/stories260K/README.md (verified there against llama2.c): ids 0 <unk>,
  // 1 BOS, 2 EOS, 3..258 <0x00>..<0xFF>, merges from 259 with score -(id-259), first merges
  // " t", "he", " a"; the longest piece is " friend".
  const Vocab vocab = read_llama2c_tokenizer(stories("tok512.bin"), kStoriesVocab);
  ASSERT_EQ(vocab.tokens.size(), 512u);
  EXPECT_EQ(vocab.model, "llama");
  EXPECT_EQ(vocab.tokens[0], "<unk>");
  EXPECT_EQ(vocab.types[0], 2);
  EXPECT_EQ(vocab.tokens[1], "<s>");
  EXPECT_EQ(vocab.tokens[2], "</s>");
  EXPECT_EQ(vocab.types[1], 3);
  EXPECT_EQ(vocab.types[2], 3);
  for (int b = 0; b < 256; ++b) {
    char expected[8];
    std::snprintf(expected, sizeof(expected), "<0x%02X>", b);
    EXPECT_EQ(vocab.tokens[3 + b], expected);
    EXPECT_EQ(vocab.types[3 + b], 6);
  }
  for (int id = 259; id < 512; ++id) {
    EXPECT_FLOAT_EQ(vocab.scores[id], -(id - 259)) << id;
    EXPECT_EQ(vocab.types[id], 1) << id;
  }
  EXPECT_EQ(vocab.tokens[259], "\xE2\x96\x81t");  // " t" with the space restored to U+2581
  EXPECT_EQ(vocab.tokens[260], "he");
  EXPECT_EQ(vocab.tokens[261], "\xE2\x96\x81" "a");
  EXPECT_NE(std::find(vocab.tokens.begin(), vocab.tokens.end(), "\xE2\x96\x81" "friend"), vocab.tokens.end());
  EXPECT_EQ(vocab.bos_id, 1);
  EXPECT_EQ(vocab.eos_id, 2);

  // A wrong vocab_size leaves bytes over or runs off the end: one clear error naming the file.
  try {
    read_llama2c_tokenizer(stories("tok512.bin"), 500);
    FAIL() << "expected an Error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("tok512.bin"), std::string::npos) << e.what();
  }
  EXPECT_THROW(read_llama2c_tokenizer(stories("tok512.bin"), 600), Error);
}

TEST(TokenizerStories, ModelBinAndGgufVocabulariesAgree) {
  LLMPRESS_REQUIRE_SHARED("models/stories260K/tok512.model");
  const SentencePieceTokenizer spm(stories("tok512.model"));
  const Vocab from_model = spm.to_vocab();
  const Vocab from_bin = read_llama2c_tokenizer(stories("tok512.bin"), kStoriesVocab);
  EXPECT_EQ(from_model.model, "llama");
  EXPECT_EQ(from_model.tokens, from_bin.tokens);  // README: identical after the export transform
  EXPECT_EQ(from_model.scores, from_bin.scores);
  EXPECT_EQ(from_model.types, from_bin.types);
  EXPECT_EQ(from_model.bos_id, 1);
  EXPECT_EQ(from_model.eos_id, 2);
  EXPECT_TRUE(from_model.add_space_prefix);
  EXPECT_TRUE(spm.removes_extra_whitespaces());  // formats.md "Trap": tok512.model leaves it on

  const Checkpoint checkpoint = open_checkpoint(stories("stories260K-F32.gguf"));
  ASSERT_TRUE(checkpoint.vocab.has_value());
  EXPECT_EQ(checkpoint.vocab->model, "llama");
  EXPECT_EQ(checkpoint.vocab->tokens, from_model.tokens);
}

TEST(TokenizerStories, ScoreMergeMatchesLibSentencePieceOnTinyStories) {
  LLMPRESS_REQUIRE_SHARED("models/stories260K/tok512.model");
  LLMPRESS_REQUIRE_SHARED("data/tinystories-eval.txt");
  const SentencePieceTokenizer from_model(stories("tok512.model"));
  const ScoreMergeTokenizer from_bin(read_llama2c_tokenizer(stories("tok512.bin"), kStoriesVocab),
                                     stories("tok512.bin"));
  const Checkpoint checkpoint = open_checkpoint(stories("stories260K-F32.gguf"));
  ASSERT_TRUE(checkpoint.vocab.has_value());
  const auto from_gguf = tokenizer_from_vocab(*checkpoint.vocab, checkpoint.path);

  const std::vector<std::string> lines = eval_lines(400);
  ASSERT_GE(lines.size(), 300u);
  const auto reference = spm_encode_reference(stories("tok512.model"), lines);
  REQUIRE_SPM_ENCODE(reference, lines);
  size_t tokens = 0;
  for (size_t i = 0; i < lines.size(); ++i) {
    const std::string& line = lines[i];
    const std::vector<int32_t>& expected = reference[i];
    ASSERT_EQ(from_model.encode(line), expected) << line;
    ASSERT_EQ(from_bin.encode(line), expected) << line;
    ASSERT_EQ(from_gguf->encode(line), expected) << line;
    ASSERT_EQ(from_bin.decode(expected), line);
    tokens += expected.size();
  }
  EXPECT_GT(tokens, lines.size() * 5);
}

TEST(TokenizerStories, WhitespaceTrapIsDocumented) {
  LLMPRESS_REQUIRE_SHARED("models/stories260K/tok512.model");
  const SentencePieceTokenizer model(stories("tok512.model"));
  const ScoreMergeTokenizer ours(read_llama2c_tokenizer(stories("tok512.bin"), kStoriesVocab), stories("tok512.bin"));
  const std::string single = "Once upon a time there was a cat.";
  const std::string doubled = "Once upon  a time there was a cat. ";
  const auto reference = spm_encode_reference(stories("tok512.model"), {single, doubled});
  REQUIRE_SPM_ENCODE(reference, std::vector<int>(2));
  // libsentencepiece (remove_extra_whitespaces on) collapses runs and trims: same ids; our
  // .model tokenizer does the same.
  EXPECT_EQ(reference[1], reference[0]);
  EXPECT_EQ(model.encode(doubled), reference[1]);
  EXPECT_EQ(model.decode(model.encode(doubled)), single);
  // llama.cpp / llama2.c (and our score merge) keep every space: different ids, exact round trip.
  EXPECT_NE(ours.encode(doubled), ours.encode(single));
  EXPECT_EQ(ours.decode(ours.encode(doubled)), doubled);
  EXPECT_EQ(ours.encode(single), reference[0]);
}

TEST(TokenizerStories, EncodesWholeEvalFileQuickly) {
  LLMPRESS_REQUIRE_SHARED("data/tinystories-eval.txt");
  const ScoreMergeTokenizer ours(read_llama2c_tokenizer(stories("tok512.bin"), kStoriesVocab), stories("tok512.bin"));
  const std::string text = test::read_text_file(test::shared_path("data/tinystories-eval.txt"));
  const auto start = std::chrono::steady_clock::now();
  const std::vector<int32_t> ids = ours.encode(text);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  EXPECT_EQ(ours.decode(ids), text);
  EXPECT_LT(seconds, 5.0) << "encoding " << text.size() << " bytes took " << seconds << " s";
}

}  // namespace
}  // namespace llmpress
