#include "llmpress/tokenizer/llama2c_tokenizer_file.h"

#include <cctype>
#include <cstring>
#include <fstream>
#include <iterator>

#include "llmpress/core/error.h"

namespace llmpress {
namespace {

constexpr int32_t kNormal = 1, kUnknown = 2, kControl = 3, kByte = 6;

bool is_byte_piece(const std::string& piece) {
  return piece.size() == 6 && piece.compare(0, 3, "<0x") == 0 && piece[5] == '>' &&
         std::isxdigit(static_cast<unsigned char>(piece[3])) && std::isxdigit(static_cast<unsigned char>(piece[4]));
}

}  // namespace

Vocab read_llama2c_tokenizer(const std::string& path, int64_t vocab_size) {
  std::ifstream file(path, std::ios::binary);
  if (!file) throw file_error(path, "cannot open tokenizer file");
  const std::string data((std::istreambuf_iterator<char>(file)), std::istreambuf_iterator<char>());
  if (vocab_size <= 0) throw file_error(path, "llama2.c tokenizer needs the model's vocab_size");

  size_t pos = 0;
  auto read_u32 = [&](const char* what) {
    if (pos + 4 > data.size()) throw file_error(path, std::string("truncated llama2.c tokenizer (") + what + ")");
    uint32_t value;
    std::memcpy(&value, data.data() + pos, 4);
    pos += 4;
    return value;
  };
  const uint32_t max_token_length = read_u32("header");

  Vocab vocab;
  vocab.model = "llama";
  vocab.pre = "default";
  vocab.bos_id = 1;
  vocab.eos_id = 2;
  vocab.unk_id = 0;
  vocab.add_bos = true;
  vocab.add_space_prefix = true;
  vocab.tokens.reserve(vocab_size);
  for (int64_t id = 0; id < vocab_size; ++id) {
    const std::string where = "token " + std::to_string(id);
    float score;
    const uint32_t score_bits = read_u32(where.c_str());
    std::memcpy(&score, &score_bits, 4);
    const uint32_t length = read_u32(where.c_str());
    if (length > max_token_length || pos + length > data.size())
      throw file_error(path, where + " has length " + std::to_string(length) + " (max_token_length " +
                                 std::to_string(max_token_length) + ", " + std::to_string(data.size() - pos) +
                                 " bytes left): not a llama2.c tokenizer for vocab_size " +
                                 std::to_string(vocab_size) + "?");
    std::string piece = data.substr(pos, length);
    pos += length;

    int32_t type = kNormal;
    if (id == 0) {
      type = kUnknown;
    } else if (id == 1 || id == 2) {
      type = kControl;
      if (piece == "\n<s>\n") piece = "<s>";
      if (piece == "\n</s>\n") piece = "</s>";
    } else if (id <= 258 && is_byte_piece(piece)) {
      type = kByte;
    }
    if (type != kControl) {  // the exporter wrote U+2581 as a plain space
      std::string restored;
      for (char c : piece) {
        if (c == ' ') restored += "\xE2\x96\x81";
        else restored += c;
      }
      piece = std::move(restored);
    }
    vocab.tokens.push_back(std::move(piece));
    vocab.scores.push_back(score);
    vocab.types.push_back(type);
  }
  if (pos != data.size())
    throw file_error(path, std::to_string(data.size() - pos) + " bytes left after " + std::to_string(vocab_size) +
                               " tokens: vocab_size does not match this llama2.c tokenizer");
  return vocab;
}

}  // namespace llmpress
