// The tokenizer.json path: a small GPT-2-style byte-level BPE written here, and hostile files.
#include <gtest/gtest.h>

#include <fstream>

#include <nlohmann/json.hpp>

#include "../test_util.h"
#include "llmpress/core/error.h"
#include "llmpress/tokenizer/byte_unicode.h"
#include "llmpress/tokenizer/pretokenizer.h"
#include "llmpress/tokenizer/tokenizer.h"

namespace llmpress {
namespace {

using nlohmann::json;

// Ids 0..255: the byte-level characters in byte order; then merge results; then added tokens.
// Merges (rank order): "Ġ t", "h e", "Ġt he", "l l", "ll o".
json small_tokenizer_json() {
  json vocab = json::object();
  for (int b = 0; b < 256; ++b) vocab[byte_to_unicode()[b]] = b;
  vocab["\xC4\xA0t"] = 256;           // "Ġt"
  vocab["he"] = 257;
  vocab["\xC4\xA0the"] = 258;         // "Ġthe"
  vocab["ll"] = 259;
  vocab["llo"] = 260;
  vocab["<|endoftext|>"] = 261;
  json root = {
      {"version", "1.0"},
      {"added_tokens",
       {{{"id", 261}, {"content", "<|endoftext|>"}, {"special", true}, {"single_word", false},
         {"lstrip", false}, {"rstrip", false}, {"normalized", false}},
        {{"id", 262}, {"content", "[NOTE]"}, {"special", false}, {"single_word", false},
         {"lstrip", false}, {"rstrip", false}, {"normalized", true}}}},
      {"normalizer", nullptr},
      {"pre_tokenizer", {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"trim_offsets", true}, {"use_regex", true}}},
      {"decoder", {{"type", "ByteLevel"}}},
      {"model",
       {{"type", "BPE"}, {"dropout", nullptr}, {"unk_token", nullptr}, {"byte_fallback", false},
        {"vocab", vocab},
        {"merges", {"\xC4\xA0 t", "h e", "\xC4\xA0t he", "l l", "ll o"}}}},
  };
  return root;
}

void write(const std::string& path, const std::string& text) { std::ofstream(path) << text; }

// One llmpress::Error whose message names the file and mentions `detail`.
void expect_file_error(const std::string& path, const std::string& detail) {
  try {
    load_tokenizer_file(path, 0);
    FAIL() << "expected an Error for " << path;
  } catch (const Error& e) {
    const std::string message = e.what();
    EXPECT_EQ(message.rfind(path + ":", 0), 0u) << message;
    EXPECT_NE(message.find(detail), std::string::npos) << message;
  }
}

TEST(TokenizerJson, SmallByteLevelBpe) {
  test::TempDir dir;
  write(dir.file("tokenizer.json"), small_tokenizer_json().dump());
  write(dir.file("tokenizer_config.json"),
        json{{"bos_token", "<|endoftext|>"}, {"eos_token", {{"content", "<|endoftext|>"}}}, {"add_bos_token", false}}.dump());
  const auto tokenizer = load_tokenizer_file(dir.file("tokenizer.json"), 0);

  // " the": Ġ+t (rank 0), h+e (1), Ġt+he (2). " hello": h+e, l+l, ll+o; Ġ stays alone as no
  // merge "Ġ he" exists. The added token is cut out of the raw text before the regex split.
  EXPECT_EQ(tokenizer->encode(" the hello<|endoftext|>x"),
            (std::vector<int32_t>{258, 32, 257, 260, 261, 'x'}));
  // Merges are by rank, not by length: "lll" merges the leftmost "l l" first.
  EXPECT_EQ(tokenizer->encode("lll"), (std::vector<int32_t>{259, 'l'}));
  // The special token decodes to nothing, a non-special added token to its text.
  EXPECT_EQ(tokenizer->decode({258, 261, 262, 'x'}), " the[NOTE]x");
  EXPECT_EQ(tokenizer->encode("a[NOTE]b"), (std::vector<int32_t>{'a', 262, 'b'}));
  // "<|endoftext" without the closing bar is plain text.
  EXPECT_EQ(tokenizer->decode(tokenizer->encode("<|endoftext")), "<|endoftext");

  EXPECT_EQ(tokenizer->vocab_size(), 263);
  EXPECT_EQ(tokenizer->bos_id(), 261);
  EXPECT_EQ(tokenizer->eos_id(), 261);
  EXPECT_FALSE(tokenizer->add_bos());
  const Vocab vocab = tokenizer->to_vocab();
  EXPECT_EQ(vocab.model, "gpt2");
  EXPECT_EQ(vocab.pre, "gpt-2");
  EXPECT_EQ(vocab.merges, (std::vector<std::string>{"\xC4\xA0 t", "h e", "\xC4\xA0t he", "l l", "ll o"}));
  EXPECT_EQ(vocab.types[261], 3);  // special added token: control
  EXPECT_EQ(vocab.types[262], 4);  // other added token: user-defined
  EXPECT_EQ(vocab.types[0], 1);
  EXPECT_EQ(vocab.tokens[262], "[NOTE]");

  // Padded up to the model's vocab_size with unused tokens.
  const auto padded = load_tokenizer_file(dir.file("tokenizer.json"), 300);
  EXPECT_EQ(padded->vocab_size(), 300);
  EXPECT_EQ(padded->to_vocab().tokens[299], "[PAD299]");
  EXPECT_EQ(padded->to_vocab().types[299], 5);
}

TEST(TokenizerJson, Llama3StyleSplitAndPairMerges) {
  test::TempDir dir;
  json root = small_tokenizer_json();
  root["pre_tokenizer"] = {
      {"type", "Sequence"},
      {"pretokenizers",
       {{{"type", "Split"}, {"pattern", {{"Regex", llama3_split_pattern()}}}, {"behavior", "Isolated"}, {"invert", false}},
        {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"trim_offsets", true}, {"use_regex", false}}}}};
  root["model"]["ignore_merges"] = true;
  // Pair-form merges (newer tokenizers); json::array() keeps nlohmann from reading the pairs as an object.
  root["model"]["merges"] = json::array({json::array({"\xC4\xA0", "t"}), json::array({"h", "e"}),
                                         json::array({"\xC4\xA0t", "he"}), json::array({"l", "l"}),
                                         json::array({"ll", "o"})});
  root["post_processor"] = {{"type", "TemplateProcessing"},
                            {"single", {{{"SpecialToken", {{"id", "<|endoftext|>"}, {"type_id", 0}}}},
                                        {{"Sequence", {{"id", "A"}, {"type_id", 0}}}}}}};
  write(dir.file("tokenizer.json"), root.dump());
  const auto tokenizer = load_tokenizer_file(dir.file("tokenizer.json"), 0);
  EXPECT_EQ(tokenizer->to_vocab().pre, "llama-bpe");
  EXPECT_EQ(tokenizer->to_vocab().merges[2], "\xC4\xA0t he");
  EXPECT_TRUE(tokenizer->add_bos());  // from the template, no tokenizer_config.json here
  EXPECT_EQ(tokenizer->bos_id(), 261);
  // Llama 3 regex: "(the" is one piece; with no merges for "(" it stays bytes.
  EXPECT_EQ(tokenizer->encode("(the"), (std::vector<int32_t>{'(', 't', 257}));
  EXPECT_EQ(tokenizer->encode(" the"), (std::vector<int32_t>{258}));
}

TEST(TokenizerJson, HostileFilesGiveOneClearError) {
  test::TempDir dir;
  const std::string path = dir.file("tokenizer.json");

  write(path, "{\"model\": {\"type\": \"BPE\", \"vocab\": {");
  expect_file_error(path, "malformed JSON");

  write(path, json{{"version", "1.0"}, {"added_tokens", json::array()}}.dump());
  expect_file_error(path, "model");

  json unknown_merge = small_tokenizer_json();
  unknown_merge["model"]["merges"].push_back("\xC4\xA0 zz");
  write(path, unknown_merge.dump());
  expect_file_error(path, "zz");

  json bad_vocab = small_tokenizer_json();
  bad_vocab["model"]["vocab"]["oops"] = "not a number";
  write(path, bad_vocab.dump());
  expect_file_error(path, "token \"oops\" has a non-integer id");

  // Found by fuzz_tokenizer_json (fuzz/regressions/tokenizer_json/float-token-id.json): a float id
  // beyond int64 was cast to an integer (UBSan: float-cast-overflow).
  json float_id = small_tokenizer_json();
  float_id["model"]["vocab"]["oops"] = 1.86889e97;
  write(path, float_id.dump());
  expect_file_error(path, "token \"oops\" has a non-integer id");
  json float_added = small_tokenizer_json();
  float_added["added_tokens"] = json::array({{{"id", 2.5}, {"content", "<x>"}, {"special", true}}});
  write(path, float_added.dump());
  expect_file_error(path, "token \"<x>\" has a non-integer id");

  json wordpiece = small_tokenizer_json();
  wordpiece["model"]["type"] = "WordPiece";
  write(path, wordpiece.dump());
  expect_file_error(path, "WordPiece");

  json metaspace = small_tokenizer_json();
  metaspace["pre_tokenizer"] = {{"type", "Metaspace"}, {"replacement", "\xE2\x96\x81"}};
  metaspace["decoder"] = {{"type", "Metaspace"}};
  write(path, metaspace.dump());
  expect_file_error(path, "Metaspace");

  expect_file_error(dir.file("missing.json"), "not found");
}

}  // namespace
}  // namespace llmpress
