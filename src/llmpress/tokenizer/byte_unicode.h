#pragma once
// GPT-2's reversible byte <-> printable-unicode alphabet used by byte-level BPE (formats.md 7.3).
#include <array>
#include <string>
#include <string_view>

namespace llmpress {

// UTF-8 text of the character that stands for byte b.
const std::array<std::string, 256>& byte_to_unicode();

// Maps every byte of `bytes` to its character.
std::string bytes_to_unicode(std::string_view bytes);

// Inverse mapping: appends to `out` the byte of each character of `text`. Returns false (and
// leaves `out` unspecified) when a character is outside the alphabet.
bool unicode_to_bytes(std::string_view text, std::string& out);

}  // namespace llmpress
