// Chooses and builds the tokenizer for a checkpoint, a file or a GGUF vocabulary.
#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>

#include "llmpress/core/error.h"
#include "llmpress/io/checkpoint.h"
#include "llmpress/tokenizer/bpe_tokenizer.h"
#include "llmpress/tokenizer/llama2c_tokenizer_file.h"
#include "llmpress/tokenizer/pretokenizer.h"
#include "llmpress/tokenizer/score_merge_tokenizer.h"
#include "llmpress/tokenizer/sentencepiece_tokenizer.h"
#include "llmpress/tokenizer/tokenizer_json.h"

namespace llmpress {
namespace {

namespace fs = std::filesystem;

bool ends_with(const std::string& text, const std::string& suffix) {
  return text.size() >= suffix.size() && text.compare(text.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// add_bos_token from a tokenizer_config.json beside a tokenizer.model, if any.
void apply_tokenizer_config(const std::string& model_path, SentencePieceTokenizer& tokenizer) {
  const fs::path config_path = fs::path(model_path).parent_path() / "tokenizer_config.json";
  if (!fs::exists(config_path)) return;
  std::ifstream file(config_path);
  const auto config = nlohmann::json::parse(file, nullptr, /*allow_exceptions=*/false);
  if (config.is_discarded()) throw file_error(config_path.string(), "malformed JSON");
  if (config.is_object() && config.contains("add_bos_token") && config.at("add_bos_token").is_boolean())
    tokenizer.set_add_bos(config.at("add_bos_token").get<bool>());
}

// A SentencePiece model is a protobuf starting with field 1 (0x0A); a llama2.c tokenizer.bin
// starts with a small little-endian u32 max_token_length, so bytes 1..3 are zero.
bool looks_like_llama2c(const std::string& path) {
  std::ifstream file(path, std::ios::binary);
  unsigned char head[4] = {0, 0, 0, 0};
  file.read(reinterpret_cast<char*>(head), 4);
  return file.gcount() == 4 && head[1] == 0 && head[2] == 0 && head[3] == 0;
}

}  // namespace

std::unique_ptr<Tokenizer> load_tokenizer_file(const std::string& path, int64_t vocab_size) {
  if (fs::is_directory(path)) {
    for (const char* name : {"tokenizer.model", "tokenizer.json"})
      if (fs::exists(fs::path(path) / name)) return load_tokenizer_file((fs::path(path) / name).string(), vocab_size);
    throw file_error(path, "no tokenizer.model or tokenizer.json in this directory");
  }
  if (!fs::exists(path)) throw file_error(path, "tokenizer file not found");

  if (ends_with(path, ".json")) {
    TokenizerJson parsed = read_tokenizer_json(path, vocab_size);
    return std::make_unique<BpeTokenizer>(std::move(parsed.vocab), std::move(parsed.settings), path);
  }
  if (ends_with(path, ".bin") || (!ends_with(path, ".model") && looks_like_llama2c(path)))
    return std::make_unique<ScoreMergeTokenizer>(read_llama2c_tokenizer(path, vocab_size), path);
  auto tokenizer = std::make_unique<SentencePieceTokenizer>(path);
  apply_tokenizer_config(path, *tokenizer);
  return tokenizer;
}

std::unique_ptr<Tokenizer> tokenizer_from_vocab(const Vocab& vocab, const std::string& source) {
  if (vocab.model == "llama") return std::make_unique<ScoreMergeTokenizer>(vocab, source);
  if (vocab.model == "gpt2") {
    BpeSettings settings;
    settings.split_pattern = split_pattern_for_pre(vocab.pre);
    if (settings.split_pattern.empty())
      throw file_error(source, "unsupported BPE pre-tokenizer \"" + vocab.pre +
                                   "\" (supported: default, gpt-2, llama-bpe, llama3, llama-v3, qwen2)");
    // llama.cpp turns ignore_merges on for the Llama 3 pre-tokenizer.
    settings.ignore_merges = vocab.pre == "llama-bpe" || vocab.pre == "llama3" || vocab.pre == "llama-v3";
    settings.match_control_tokens = false;  // as llama.cpp tokenizes plain text
    return std::make_unique<BpeTokenizer>(vocab, std::move(settings), source);
  }
  throw file_error(source, "unsupported tokenizer model \"" + vocab.model + "\" (supported: llama, gpt2)");
}

std::unique_ptr<Tokenizer> load_tokenizer(const Checkpoint& checkpoint) {
  if (!checkpoint.tokenizer_file.empty())
    return load_tokenizer_file(checkpoint.tokenizer_file, checkpoint.config.vocab_size);
  if (checkpoint.vocab) return tokenizer_from_vocab(*checkpoint.vocab, checkpoint.path);
  throw file_error(checkpoint.path,
                   "no tokenizer found: put tokenizer.model or tokenizer.json beside the model, or pass --tokenizer "
                   "(llama2.c models need their tokenizer.bin)");
}

}  // namespace llmpress
