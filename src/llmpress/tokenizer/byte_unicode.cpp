#include "llmpress/tokenizer/byte_unicode.h"

#include <unordered_map>

#include "llmpress/tokenizer/utf8.h"

namespace llmpress {
namespace {

struct Alphabet {
  std::array<std::string, 256> to_unicode;
  std::unordered_map<uint32_t, unsigned char> to_byte;

  Alphabet() {
    // Printable bytes keep their own code point; the other 68 take 256, 257, ... in byte order.
    uint32_t next = 256;
    for (int b = 0; b < 256; ++b) {
      const bool printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
      const uint32_t cp = printable ? static_cast<uint32_t>(b) : next++;
      to_unicode[b] = utf8::encode(cp);
      to_byte[cp] = static_cast<unsigned char>(b);
    }
  }
};

const Alphabet& alphabet() {
  static const Alphabet instance;
  return instance;
}

}  // namespace

const std::array<std::string, 256>& byte_to_unicode() { return alphabet().to_unicode; }

std::string bytes_to_unicode(std::string_view bytes) {
  const auto& table = alphabet().to_unicode;
  std::string out;
  out.reserve(bytes.size() * 2);
  for (char c : bytes) out += table[static_cast<unsigned char>(c)];
  return out;
}

bool unicode_to_bytes(std::string_view text, std::string& out) {
  const auto& table = alphabet().to_byte;
  for (size_t pos = 0; pos < text.size();) {
    const size_t length = utf8::char_length(text, pos);
    auto it = table.find(utf8::decode(text, pos, length));
    if (it == table.end()) return false;
    out += static_cast<char>(it->second);
    pos += length;
  }
  return true;
}

}  // namespace llmpress
