#include "llmpress/tokenizer/score_merge_tokenizer.h"

#include <cstdio>
#include <queue>

#include "llmpress/core/error.h"
#include "llmpress/tokenizer/utf8.h"

namespace llmpress {
namespace {

constexpr int32_t kNormal = 1, kUnknown = 2, kControl = 3, kUserDefined = 4, kByte = 6;
const std::string kSpaceMark = "\xE2\x96\x81";  // U+2581, SentencePiece's visible space

std::string escape_spaces(std::string_view text) {
  std::string out;
  out.reserve(text.size() + text.size() / 4);
  for (char c : text) {
    if (c == ' ') out += kSpaceMark;
    else out += c;
  }
  return out;
}

std::string unescape_spaces(const std::string& piece) {
  std::string out;
  for (size_t pos = 0; pos < piece.size();) {
    if (piece.compare(pos, kSpaceMark.size(), kSpaceMark) == 0) {
      out += ' ';
      pos += kSpaceMark.size();
    } else {
      out += piece[pos++];
    }
  }
  return out;
}

// "<0xAB>" -> 0xAB, or -1.
int parse_byte_piece(const std::string& piece) {
  if (piece.size() != 6 || piece.compare(0, 3, "<0x") != 0 || piece[5] != '>') return -1;
  unsigned value = 0;
  for (int i = 3; i < 5; ++i) {
    const char c = piece[i];
    value <<= 4;
    if (c >= '0' && c <= '9') value |= c - '0';
    else if (c >= 'A' && c <= 'F') value |= c - 'A' + 10;
    else if (c >= 'a' && c <= 'f') value |= c - 'a' + 10;
    else return -1;
  }
  return static_cast<int>(value);
}

struct Symbol {
  size_t start = 0, length = 0;  // bytes of the escaped text; length 0 once merged away
  int prev = -1, next = -1;
};

struct Candidate {
  float score;
  int left, right;
  size_t length;  // combined length when queued: detects stale entries
  bool operator<(const Candidate& other) const {  // top of the queue: best score, then leftmost
    if (score != other.score) return score < other.score;
    return left > other.left;
  }
};

}  // namespace

ScoreMergeTokenizer::ScoreMergeTokenizer(Vocab vocab, const std::string& source)
    : vocab_(std::move(vocab)), source_(source) {
  const size_t n = vocab_.tokens.size();
  if (n == 0) throw file_error(source_, "tokenizer vocabulary is empty");
  if (!vocab_.scores.empty() && vocab_.scores.size() < n)
    throw file_error(source_, "tokenizer has " + std::to_string(vocab_.scores.size()) + " scores for " +
                                  std::to_string(n) + " tokens");
  if (!vocab_.types.empty() && vocab_.types.size() < n)
    throw file_error(source_, "tokenizer has " + std::to_string(vocab_.types.size()) + " token types for " +
                                  std::to_string(n) + " tokens");
  if (vocab_.scores.empty()) vocab_.scores.assign(n, 0.0f);
  if (vocab_.types.empty()) vocab_.types.assign(n, kNormal);
  byte_ids_.fill(-1);
  ids_.reserve(n);
  for (size_t id = 0; id < n; ++id) {
    const std::string& token = vocab_.tokens[id];
    ids_.emplace(std::string_view(token), static_cast<int32_t>(id));  // first wins on duplicates
    const int byte = parse_byte_piece(token);
    if (byte >= 0 && byte_ids_[byte] < 0) byte_ids_[byte] = static_cast<int32_t>(id);
    if (vocab_.types[id] == kUserDefined) user_defined_.add(token, static_cast<int32_t>(id));
  }
  if (vocab_.unk_id >= static_cast<int64_t>(n)) vocab_.unk_id = -1;
}

int32_t ScoreMergeTokenizer::type_of(int32_t id) const {
  return (id >= 0 && id < static_cast<int32_t>(vocab_.types.size())) ? vocab_.types[id] : kNormal;
}

bool ScoreMergeTokenizer::resets_prefix(int32_t id) const {
  const int32_t type = type_of(id);
  return type == kControl || type == kUserDefined;
}

std::vector<int32_t> ScoreMergeTokenizer::encode(const std::string& text) const {
  std::vector<int32_t> out;
  out.reserve(text.size() / 3 + 4);
  // Like llama.cpp: a space is prefixed to the text and to every raw-text stretch after a
  // user-defined token.
  for (const TextFragment& fragment : user_defined_.split(text)) {
    if (fragment.token >= 0) {
      out.push_back(fragment.token);
    } else {
      const bool at_start = out.empty() || resets_prefix(out.back());
      encode_text(fragment.text, vocab_.add_space_prefix && at_start, out);
    }
  }
  return out;
}

void ScoreMergeTokenizer::encode_text(std::string_view raw, bool prefix_space, std::vector<int32_t>& out) const {
  const std::string text = escape_spaces(prefix_space ? " " + std::string(raw) : std::string(raw));
  if (text.empty()) return;

  std::vector<Symbol> symbols;
  symbols.reserve(text.size());
  for (size_t pos = 0; pos < text.size();) {
    const size_t length = utf8::char_length(text, pos);
    const int index = static_cast<int>(symbols.size());
    symbols.push_back({pos, length, index - 1, -1});
    if (index > 0) symbols[index - 1].next = index;
    pos += length;
  }

  std::priority_queue<Candidate> queue;
  const std::string_view view(text);
  auto try_pair = [&](int left, int right) {
    if (left < 0 || right < 0) return;
    const size_t length = symbols[left].length + symbols[right].length;
    auto it = ids_.find(view.substr(symbols[left].start, length));
    if (it == ids_.end()) return;
    queue.push({vocab_.scores[it->second], left, right, length});
  };
  for (size_t i = 1; i < symbols.size(); ++i) try_pair(static_cast<int>(i) - 1, static_cast<int>(i));

  while (!queue.empty()) {
    const Candidate best = queue.top();
    queue.pop();
    Symbol& left = symbols[best.left];
    Symbol& right = symbols[best.right];
    if (left.length == 0 || right.length == 0 || left.length + right.length != best.length) continue;
    left.length += right.length;
    right.length = 0;
    left.next = right.next;
    if (right.next >= 0) symbols[right.next].prev = best.left;
    try_pair(left.prev, best.left);
    try_pair(best.left, left.next);
  }

  for (int i = 0; i >= 0; i = symbols[i].next) {
    const std::string_view piece = view.substr(symbols[i].start, symbols[i].length);
    auto it = ids_.find(piece);
    if (it != ids_.end()) out.push_back(it->second);
    else emit_bytes(piece, out);
  }
}

void ScoreMergeTokenizer::emit_bytes(std::string_view symbol, std::vector<int32_t>& out) const {
  for (char c : symbol) {
    const int32_t id = byte_ids_[static_cast<unsigned char>(c)];
    if (id >= 0) out.push_back(id);
    else if (vocab_.unk_id >= 0) out.push_back(static_cast<int32_t>(vocab_.unk_id));
    else throw file_error(source_, "cannot encode a character: no byte piece and no unknown token");
    if (id < 0) return;  // one unknown token stands for the whole character
  }
}

std::string ScoreMergeTokenizer::piece_bytes(int32_t id) const {
  if (id < 0 || id >= static_cast<int32_t>(vocab_.tokens.size())) return "";
  const std::string& token = vocab_.tokens[id];
  switch (type_of(id)) {
    case kControl:
      return "";
    case kUnknown:
      return " \xE2\x81\x87 ";  // " ⁇ ", SentencePiece's default surface for unknown pieces
    case kByte: {
      const int byte = parse_byte_piece(token);
      if (byte >= 0) return std::string(1, static_cast<char>(byte));
      break;
    }
    default:
      break;
  }
  return unescape_spaces(token);
}

std::string ScoreMergeTokenizer::decode(const std::vector<int32_t>& ids) const {
  std::string out;
  int32_t previous = -1;
  for (int32_t id : ids) {
    out += token_text(id, previous);
    previous = id;
  }
  return out;
}

std::string ScoreMergeTokenizer::token_text(int32_t id, int32_t previous_id) const {
  std::string text = piece_bytes(id);
  // Undo the prefixed space where encode() put one: at the start and after BOS/user-defined tokens.
  const bool after_prefix_point = previous_id < 0 || resets_prefix(previous_id);
  if (vocab_.add_space_prefix && after_prefix_point && !resets_prefix(id) && !text.empty() && text[0] == ' ')
    text.erase(0, 1);
  return text;
}

}  // namespace llmpress
