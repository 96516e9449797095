#include "llmpress/tokenizer/tokenizer_json.h"

#include <filesystem>
#include <functional>
#include <fstream>

#include <nlohmann/json.hpp>

#include "llmpress/core/error.h"
#include "llmpress/core/json_excerpt.h"

namespace llmpress {
namespace {

using nlohmann::json;
constexpr int32_t kNormal = 1, kControl = 3, kUserDefined = 4, kUnused = 5;

json parse_file(const std::string& path) {
  std::ifstream file(path);
  if (!file) throw file_error(path, "cannot open");
  try {
    return json::parse(file);
  } catch (const json::exception& e) {
    throw file_error(path, std::string("malformed JSON: ") + e.what());
  }
}

struct PreTokenizerFacts {
  bool byte_level = false;
  bool byte_level_regex = false;
  bool add_prefix_space = false;
  std::string split_pattern;
};

void read_pre_tokenizer(const json& node, PreTokenizerFacts& facts) {
  if (!node.is_object()) return;
  const std::string type = node.value("type", "");
  if (type == "Sequence") {
    for (const json& child : node.at("pretokenizers")) read_pre_tokenizer(child, facts);
  } else if (type == "ByteLevel") {
    facts.byte_level = true;
    facts.byte_level_regex = node.value("use_regex", true);
    facts.add_prefix_space = node.value("add_prefix_space", false);
  } else if (type == "Split") {
    const json& pattern = node.at("pattern");
    if (!pattern.contains("Regex")) throw Error("Split pre-tokenizer with a String pattern is not supported");
    if (node.value("behavior", "Isolated") != "Isolated" || node.value("invert", false))
      throw Error("Split pre-tokenizer behaviour other than Isolated is not supported");
    if (!facts.split_pattern.empty()) throw Error("more than one Split pre-tokenizer is not supported");
    facts.split_pattern = pattern.at("Regex").get<std::string>();
  } else if (!type.empty()) {
    throw Error("pre-tokenizer type \"" + type + "\" is not supported");
  }
}

// A token id: an integer JSON number (a float such as 1e97 would not even convert safely).
int64_t token_id(const json& value, const std::string& token) {
  if (!value.is_number_integer()) throw Error("token \"" + token + "\" has a non-integer id");
  const int64_t id = value.get<int64_t>();
  if (id < 0 || id > (1 << 24)) throw Error("token \"" + token + "\" has implausible id " + std::to_string(id));
  return id;
}

bool mentions_byte_level(const json& node) {
  if (node.is_object()) {
    if (node.value("type", "") == "ByteLevel") return true;
    for (const auto& item : node.items())
      if (mentions_byte_level(item.value())) return true;
  } else if (node.is_array()) {
    for (const json& child : node)
      if (mentions_byte_level(child)) return true;
  }
  return false;
}

// "bos_token": "<s>" or {"content": "<s>", ...}
std::string token_content(const json& config, const char* key) {
  if (!config.contains(key)) return "";
  const json& value = config.at(key);
  if (value.is_string()) return value.get<std::string>();
  if (value.is_object() && value.contains("content")) return value.at("content").get<std::string>();
  return "";
}

int64_t find_token(const Vocab& vocab, const std::string& text) {
  if (text.empty()) return -1;
  for (size_t id = 0; id < vocab.tokens.size(); ++id)
    if (vocab.tokens[id] == text) return static_cast<int64_t>(id);
  return -1;
}

void read_special_ids(const std::string& path, const json& root, Vocab& vocab) {
  vocab.add_bos = false;
  // TemplateProcessing "single": [{"SpecialToken": {"id": "<|begin_of_text|>"}}, {"Sequence": ...}]
  std::function<void(const json&)> scan_post = [&](const json& node) {
    if (!node.is_object()) return;
    const std::string type = node.value("type", "");
    if (type == "Sequence" && node.contains("processors")) {
      for (const json& child : node.at("processors")) scan_post(child);
    } else if (type == "TemplateProcessing" && node.contains("single") && node.at("single").is_array() &&
               !node.at("single").empty() && node.at("single")[0].contains("SpecialToken")) {
      const int64_t id = find_token(vocab, node.at("single")[0].at("SpecialToken").at("id").get<std::string>());
      if (id >= 0) {
        vocab.bos_id = id;
        vocab.add_bos = true;
      }
    }
  };
  if (root.contains("post_processor")) scan_post(root.at("post_processor"));

  const auto config_path = std::filesystem::path(path).parent_path() / "tokenizer_config.json";
  if (!std::filesystem::exists(config_path)) return;
  const json config = parse_file(config_path.string());
  try {
    if (int64_t id = find_token(vocab, token_content(config, "bos_token")); id >= 0) vocab.bos_id = id;
    if (int64_t id = find_token(vocab, token_content(config, "eos_token")); id >= 0) vocab.eos_id = id;
    if (int64_t id = find_token(vocab, token_content(config, "pad_token")); id >= 0) vocab.pad_id = id;
    if (config.contains("add_bos_token") && config.at("add_bos_token").is_boolean())
      vocab.add_bos = config.at("add_bos_token").get<bool>();
    if (config.contains("add_eos_token") && config.at("add_eos_token").is_boolean())
      vocab.add_eos = config.at("add_eos_token").get<bool>();
  } catch (const json::exception& e) {
    throw file_error(config_path.string(), std::string("malformed tokenizer_config.json: ") + e.what());
  }
}

TokenizerJson read(const std::string& path, const json& root, int64_t vocab_size) {
  if (!root.is_object() || !root.contains("model") || !root.at("model").is_object())
    throw Error("no \"model\" object: not a tokenizer.json");
  const json& model = root.at("model");
  const std::string model_type = model.value("type", "BPE");
  if (model_type != "BPE") throw Error("model type \"" + model_type + "\" is not supported (only BPE)");
  if (!model.contains("vocab") || !model.at("vocab").is_object()) throw Error("model has no \"vocab\" object");
  if (!model.contains("merges") || !model.at("merges").is_array()) throw Error("model has no \"merges\" list");
  for (const char* key : {"continuing_subword_prefix", "end_of_word_suffix"})
    if (model.contains(key) && !model.at(key).is_null() && !model.at(key).get<std::string>().empty())
      throw Error(std::string("model option ") + key + " is not supported");

  PreTokenizerFacts pre;
  if (root.contains("pre_tokenizer")) read_pre_tokenizer(root.at("pre_tokenizer"), pre);
  if (!pre.byte_level && !(root.contains("decoder") && mentions_byte_level(root.at("decoder"))))
    throw Error("not a byte-level BPE tokenizer (SentencePiece-style tokenizer.json files are read from "
                "the tokenizer.model beside them)");

  TokenizerJson out;
  Vocab& vocab = out.vocab;
  vocab.model = "gpt2";
  vocab.add_space_prefix = false;

  std::vector<std::pair<std::string, int64_t>> entries;
  int64_t max_id = -1;
  for (const auto& item : model.at("vocab").items()) {
    const int64_t id = token_id(item.value(), item.key());
    entries.emplace_back(item.key(), id);
    max_id = std::max(max_id, id);
  }
  struct Added {
    std::string content;
    int64_t id;
    bool special;
  };
  std::vector<Added> added;
  if (root.contains("added_tokens") && root.at("added_tokens").is_array()) {
    for (const json& token : root.at("added_tokens")) {
      const std::string content = token.at("content").get<std::string>();
      added.push_back({content, token_id(token.at("id"), content), token.value("special", false)});
      max_id = std::max(max_id, added.back().id);
    }
  }
  const int64_t count = std::max(max_id + 1, vocab_size);
  vocab.tokens.assign(count, "");
  vocab.types.assign(count, kNormal);
  std::vector<bool> filled(count, false);
  for (const auto& [text, id] : entries) {
    if (filled[id]) throw Error("two tokens share id " + std::to_string(id));
    vocab.tokens[id] = text;
    filled[id] = true;
  }
  for (const Added& token : added) {
    vocab.tokens[token.id] = token.content;
    vocab.types[token.id] = token.special ? kControl : kUserDefined;
    filled[token.id] = true;
  }
  for (int64_t id = 0; id < count; ++id) {
    if (!filled[id]) {
      vocab.tokens[id] = "[PAD" + std::to_string(id) + "]";
      vocab.types[id] = kUnused;
    }
  }

  for (const json& merge : model.at("merges")) {
    if (merge.is_string()) {
      vocab.merges.push_back(merge.get<std::string>());
    } else if (merge.is_array() && merge.size() == 2) {
      vocab.merges.push_back(merge[0].get<std::string>() + " " + merge[1].get<std::string>());
    } else {
      throw Error("merge entry " + json_excerpt(merge) + " is neither \"a b\" nor [\"a\", \"b\"]");
    }
  }

  if (model.contains("unk_token") && model.at("unk_token").is_string())
    vocab.unk_id = find_token(vocab, model.at("unk_token").get<std::string>());
  read_special_ids(path, root, vocab);

  BpeSettings& settings = out.settings;
  settings.split_pattern = !pre.split_pattern.empty() ? pre.split_pattern
                           : (pre.byte_level && pre.byte_level_regex) ? gpt2_split_pattern()
                                                                      : std::string();
  settings.ignore_merges = model.value("ignore_merges", false);
  settings.byte_fallback = model.value("byte_fallback", false);
  settings.match_control_tokens = true;  // Hugging Face matches every added token in raw text
  settings.add_prefix_space = pre.add_prefix_space;
  vocab.pre = pre_for_split_pattern(settings.split_pattern);
  return out;
}

}  // namespace

TokenizerJson read_tokenizer_json(const std::string& path, int64_t vocab_size) {
  const json root = parse_file(path);
  try {
    return read(path, root, vocab_size);
  } catch (const json::exception& e) {
    throw file_error(path, std::string("malformed tokenizer.json: ") + e.what());
  } catch (const Error& e) {
    const std::string message = e.what();
    if (message.rfind(path + ":", 0) == 0) throw;
    throw file_error(path, message);
  }
}

}  // namespace llmpress
