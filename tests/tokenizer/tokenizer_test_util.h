#pragma once
// Helpers for the tokenizer tests: GGUF vocabulary-only files (llama.cpp's ggml-vocab-*.gguf have
// no tensors, so open_checkpoint() does not apply) and llama.cpp's .inp/.out test files.
#include <fstream>
#include <iterator>
#include <sstream>
#include <string>
#include <vector>

#include "llmpress/io/gguf.h"
#include "llmpress/io/vocab.h"

namespace llmpress::test {

// The tokenizer.ggml.* keys of a GGUF file as a Vocab, with llama.cpp's defaults (formats.md 1.9).
inline Vocab read_gguf_vocab(const std::string& path) {
  const GgufFile gguf = read_gguf(path);
  auto string_key = [&](const char* key, const std::string& fallback) {
    const GgufValue* value = gguf.find(key);
    return value ? value->string_value : fallback;
  };
  Vocab vocab;
  vocab.model = string_key("tokenizer.ggml.model", "");
  vocab.pre = string_key("tokenizer.ggml.pre", "default");
  if (const GgufValue* v = gguf.find("tokenizer.ggml.tokens")) vocab.tokens = v->strings;
  if (const GgufValue* v = gguf.find("tokenizer.ggml.scores"))
    for (double s : v->floats) vocab.scores.push_back(static_cast<float>(s));
  if (const GgufValue* v = gguf.find("tokenizer.ggml.token_type"))
    for (int64_t t : v->ints) vocab.types.push_back(static_cast<int32_t>(t));
  if (const GgufValue* v = gguf.find("tokenizer.ggml.merges")) vocab.merges = v->strings;
  const bool bpe = vocab.model == "gpt2";
  vocab.bos_id = bpe ? 11 : 1;
  vocab.eos_id = bpe ? 11 : 2;
  vocab.unk_id = bpe ? -1 : 0;
  vocab.add_space_prefix = !bpe;
  vocab.add_bos = !bpe || vocab.pre == "llama-bpe";
  if (const GgufValue* v = gguf.find("tokenizer.ggml.bos_token_id")) vocab.bos_id = v->int_value;
  if (const GgufValue* v = gguf.find("tokenizer.ggml.eos_token_id")) vocab.eos_id = v->int_value;
  if (const GgufValue* v = gguf.find("tokenizer.ggml.unknown_token_id")) vocab.unk_id = v->int_value;
  if (const GgufValue* v = gguf.find("tokenizer.ggml.add_bos_token")) vocab.add_bos = v->int_value != 0;
  if (const GgufValue* v = gguf.find("tokenizer.ggml.add_space_prefix")) vocab.add_space_prefix = v->int_value != 0;
  return vocab;
}

inline std::string read_text_file(const std::string& path) {
  std::ifstream file(path, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(file)), std::istreambuf_iterator<char>());
}

struct VocabTestCase {
  std::string text;
  std::vector<int32_t> ids;
};

// llama.cpp's tokenizer test files: NAME.inp holds the inputs separated by lines
// "__ggml_vocab_test__"; NAME.out one line of space-separated expected ids per input.
inline std::vector<VocabTestCase> read_vocab_test_cases(const std::string& inp_path, const std::string& out_path) {
  const std::string inputs = read_text_file(inp_path);
  const std::string separator = "\n__ggml_vocab_test__\n";
  std::vector<VocabTestCase> cases;
  for (size_t pos = 0; pos < inputs.size();) {
    size_t next = inputs.find(separator, pos);
    if (next == std::string::npos) next = inputs.size();
    cases.push_back({inputs.substr(pos, next - pos), {}});
    pos = next + (next == inputs.size() ? 0 : separator.size());
  }
  std::ifstream outputs(out_path);
  std::string line;
  size_t index = 0;
  while (std::getline(outputs, line)) {
    if (index >= cases.size()) return {};  // mismatched files: caller fails on the count
    std::istringstream ids(line);
    for (int32_t id; ids >> id;) cases[index].ids.push_back(id);
    ++index;
  }
  if (index != cases.size()) return {};
  return cases;
}

}  // namespace llmpress::test
