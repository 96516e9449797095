#include "llmpress/tokenizer/bpe_tokenizer.h"

#include <cstdio>
#include <queue>

#include "llmpress/core/error.h"
#include "llmpress/tokenizer/byte_unicode.h"

namespace llmpress {
namespace {

constexpr int32_t kNormal = 1, kControl = 3, kUserDefined = 4;

uint64_t pair_key(int32_t left, int32_t right) {
  return (static_cast<uint64_t>(static_cast<uint32_t>(left)) << 32) | static_cast<uint32_t>(right);
}

struct Symbol {
  int32_t id;
  int prev, next;
};

struct Candidate {
  int32_t rank;
  int left, right;
  int32_t left_id, right_id;  // ids when queued: detects stale entries
  bool operator<(const Candidate& other) const {  // top of the queue: lowest rank, then leftmost
    if (rank != other.rank) return rank > other.rank;
    return left > other.left;
  }
};

}  // namespace

BpeTokenizer::BpeTokenizer(Vocab vocab, BpeSettings settings, const std::string& source)
    : vocab_(std::move(vocab)), settings_(std::move(settings)), source_(source) {
  const size_t n = vocab_.tokens.size();
  if (n == 0) throw file_error(source_, "tokenizer vocabulary is empty");
  if (!vocab_.types.empty() && vocab_.types.size() < n)
    throw file_error(source_, "tokenizer has " + std::to_string(vocab_.types.size()) + " token types for " +
                                  std::to_string(n) + " tokens");
  if (vocab_.types.empty()) vocab_.types.assign(n, kNormal);
  if (!settings_.split_pattern.empty()) splitter_ = std::make_unique<RegexSplitter>(settings_.split_pattern, source_);

  ids_.reserve(n);
  for (size_t id = 0; id < n; ++id) {
    const std::string& token = vocab_.tokens[id];
    ids_.emplace(std::string_view(token), static_cast<int32_t>(id));
    const int32_t type = vocab_.types[id];
    if (type == kUserDefined || (type == kControl && settings_.match_control_tokens))
      added_.add(token, static_cast<int32_t>(id));
  }
  for (int b = 0; b < 256; ++b) {
    auto it = ids_.find(byte_to_unicode()[b]);
    byte_symbol_ids_[b] = it == ids_.end() ? -1 : it->second;
    char hex[8];
    std::snprintf(hex, sizeof(hex), "<0x%02X>", b);
    it = ids_.find(hex);
    byte_fallback_ids_[b] = it == ids_.end() ? -1 : it->second;
  }

  merges_.reserve(vocab_.merges.size());
  for (size_t rank = 0; rank < vocab_.merges.size(); ++rank) {
    const std::string& merge = vocab_.merges[rank];
    // Split at the first space at index >= 1, so a merge of " " itself stays readable.
    const size_t space = merge.find(' ', 1);
    if (space == std::string::npos)
      throw file_error(source_, "merge " + std::to_string(rank) + " \"" + merge + "\" is not \"left right\"");
    const std::string left = merge.substr(0, space), right = merge.substr(space + 1);
    auto l = ids_.find(left), r = ids_.find(right), result = ids_.find(left + right);
    if (l == ids_.end() || r == ids_.end() || result == ids_.end())
      throw file_error(source_, "merge " + std::to_string(rank) + " \"" + merge + "\" refers to a token (\"" +
                                    (l == ids_.end() ? left : r == ids_.end() ? right : left + right) +
                                    "\") missing from the vocabulary");
    merges_.emplace(pair_key(l->second, r->second), Merge{static_cast<int32_t>(rank), result->second});
  }
  if (vocab_.unk_id >= static_cast<int64_t>(n)) vocab_.unk_id = -1;
}

int32_t BpeTokenizer::type_of(int32_t id) const {
  return (id >= 0 && id < static_cast<int32_t>(vocab_.types.size())) ? vocab_.types[id] : kNormal;
}

std::vector<int32_t> BpeTokenizer::encode(const std::string& input) const {
  std::string prefixed;
  const std::string* text = &input;
  if (settings_.add_prefix_space && !input.empty() && input[0] != ' ') {
    prefixed = " " + input;
    text = &prefixed;
  }
  std::vector<int32_t> out;
  out.reserve(text->size() / 3 + 4);
  for (const TextFragment& fragment : added_.split(*text)) {
    if (fragment.token >= 0) {
      out.push_back(fragment.token);
    } else if (splitter_) {
      for (std::string_view piece : splitter_->split(fragment.text)) encode_piece(piece, out);
    } else {
      encode_piece(fragment.text, out);
    }
  }
  return out;
}

void BpeTokenizer::encode_piece(std::string_view piece, std::vector<int32_t>& out) const {
  if (piece.empty()) return;
  if (settings_.ignore_merges) {
    auto it = ids_.find(bytes_to_unicode(piece));
    if (it != ids_.end()) {
      out.push_back(it->second);
      return;
    }
  }
  // Byte-level: every byte starts as the token of its mapped character.
  std::vector<Symbol> symbols(piece.size());
  for (size_t i = 0; i < piece.size(); ++i)
    symbols[i] = {byte_symbol_ids_[static_cast<unsigned char>(piece[i])], static_cast<int>(i) - 1,
                  i + 1 < piece.size() ? static_cast<int>(i) + 1 : -1};

  std::priority_queue<Candidate> queue;
  auto try_pair = [&](int left, int right) {
    if (left < 0 || right < 0 || symbols[left].id < 0 || symbols[right].id < 0) return;
    auto it = merges_.find(pair_key(symbols[left].id, symbols[right].id));
    if (it == merges_.end()) return;
    queue.push({it->second.rank, left, right, symbols[left].id, symbols[right].id});
  };
  for (size_t i = 1; i < symbols.size(); ++i) try_pair(static_cast<int>(i) - 1, static_cast<int>(i));

  while (!queue.empty()) {
    const Candidate best = queue.top();
    queue.pop();
    Symbol& left = symbols[best.left];
    Symbol& right = symbols[best.right];
    if (left.next != best.right || left.id != best.left_id || right.id != best.right_id) continue;
    left.id = merges_.at(pair_key(best.left_id, best.right_id)).result;
    left.next = right.next;
    if (right.next >= 0) symbols[right.next].prev = best.left;
    right.id = -2;  // merged away
    right.next = right.prev = -1;
    try_pair(left.prev, best.left);
    try_pair(best.left, left.next);
  }

  for (int i = 0; i >= 0; i = symbols[i].next) {
    if (symbols[i].id >= 0) out.push_back(symbols[i].id);
    else emit_unmergeable(static_cast<unsigned char>(piece[i]), out);  // unmerged: symbol i is byte i
  }
}

void BpeTokenizer::emit_unmergeable(unsigned char byte, std::vector<int32_t>& out) const {
  if (settings_.byte_fallback && byte_fallback_ids_[byte] >= 0) out.push_back(byte_fallback_ids_[byte]);
  else if (vocab_.unk_id >= 0) out.push_back(static_cast<int32_t>(vocab_.unk_id));
  else
    throw file_error(source_, "cannot encode byte " + std::to_string(byte) +
                                  ": not in the vocabulary and no byte fallback or unknown token");
}

std::string BpeTokenizer::token_text(int32_t id, int32_t /*previous_id*/) const {
  if (id < 0 || id >= static_cast<int32_t>(vocab_.tokens.size())) return "";
  const std::string& token = vocab_.tokens[id];
  const int32_t type = type_of(id);
  if (type == kControl) return "";
  if (type == kUserDefined) return token;  // added tokens are stored as plain text
  std::string bytes;
  if (unicode_to_bytes(token, bytes)) return bytes;
  // Not byte-level text: a <0xXX> fallback token, or a token shown verbatim.
  for (int b = 0; b < 256; ++b)
    if (byte_fallback_ids_[b] == id) return std::string(1, static_cast<char>(b));
  return token;
}

std::string BpeTokenizer::decode(const std::vector<int32_t>& ids) const {
  std::string out;
  for (int32_t id : ids) out += token_text(id, -1);
  return out;
}

}  // namespace llmpress
