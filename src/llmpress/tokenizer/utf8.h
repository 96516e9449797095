#pragma once
// Minimal UTF-8 helpers shared by the tokenizers.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace llmpress::utf8 {

// Byte length of the character starting at text[pos]: the lead byte's length, cut short at the
// end of the text or at the first byte that is not a continuation byte. Invalid bytes count as
// one-byte characters, so every byte of any input belongs to exactly one character.
size_t char_length(std::string_view text, size_t pos);

// UTF-8 encoding of one code point.
std::string encode(uint32_t code_point);

// Decodes the character at text[pos] (length from char_length); invalid sequences give 0xFFFD.
uint32_t decode(std::string_view text, size_t pos, size_t length);

}  // namespace llmpress::utf8
