#include "llmpress/tokenizer/sentencepiece_tokenizer.h"

#include <fstream>
#include <iterator>
#include <cstring>
#include <string_view>

#include "llmpress/core/error.h"

namespace llmpress {
namespace {

constexpr int32_t kNormal = 1, kUnknown = 2, kControl = 3;

// The ModelProto fields we need (formats.md 7.1): pieces, scores, types, model type and the
// normalizer settings. Protobuf wire format:
// key = field << 3 | wire type; 0 varint, 1 fixed64, 2 length-delimited, 5 fixed32.
struct ProtoFacts {
  std::vector<int32_t> piece_types;
  std::vector<std::string> pieces;
  std::vector<float> scores;
  int model_type = 1;  // trainer_spec.model_type: UNIGRAM 1, BPE 2
  std::string normalizer_name;
  bool add_dummy_prefix = true;
  bool remove_extra_whitespaces = true;
  bool has_charsmap = false;
};

class ProtoReader {
 public:
  explicit ProtoReader(std::string_view data) : data_(data) {}
  bool done() const { return pos_ >= data_.size(); }
  uint64_t varint() {
    uint64_t value = 0;
    for (int shift = 0; shift < 64; shift += 7) {
      if (pos_ >= data_.size()) throw Error("truncated varint");
      const auto byte = static_cast<unsigned char>(data_[pos_++]);
      value |= static_cast<uint64_t>(byte & 0x7F) << shift;
      if (!(byte & 0x80)) return value;
    }
    throw Error("overlong varint");
  }
  std::string_view bytes() {
    const uint64_t length = varint();
    if (length > data_.size() - pos_) throw Error("truncated field");
    std::string_view out = data_.substr(pos_, length);
    pos_ += length;
    return out;
  }
  float fixed32() {
    if (4 > data_.size() - pos_) throw Error("truncated field");
    float value;
    std::memcpy(&value, data_.data() + pos_, 4);
    pos_ += 4;
    return value;
  }
  void skip(int wire_type) {
    if (wire_type == 0) varint();
    else if (wire_type == 2) bytes();
    else if (wire_type == 1 || wire_type == 5) {
      const size_t size = wire_type == 1 ? 8 : 4;
      if (size > data_.size() - pos_) throw Error("truncated field");
      pos_ += size;
    } else {
      throw Error("unsupported wire type");
    }
  }

 private:
  std::string_view data_;
  size_t pos_ = 0;
};

ProtoFacts read_proto_facts(std::string_view model) {
  ProtoFacts facts;
  ProtoReader reader(model);
  while (!reader.done()) {
    const uint64_t key = reader.varint();
    const int field = static_cast<int>(key >> 3), wire = static_cast<int>(key & 7);
    if (field == 1 && wire == 2) {  // SentencePiece { piece 1, score 2, type 3 }
      ProtoReader piece(reader.bytes());
      int32_t type = kNormal;
      std::string text;
      float score = 0;
      while (!piece.done()) {
        const uint64_t piece_key = piece.varint();
        if (piece_key == ((1 << 3) | 2)) text = std::string(piece.bytes());
        else if (piece_key == ((2 << 3) | 5)) score = piece.fixed32();
        else if (piece_key == ((3 << 3) | 0)) type = static_cast<int32_t>(piece.varint());
        else piece.skip(static_cast<int>(piece_key & 7));
      }
      facts.pieces.push_back(std::move(text));
      facts.scores.push_back(score);
      facts.piece_types.push_back(type);
    } else if (field == 2 && wire == 2) {  // TrainerSpec
      ProtoReader spec(reader.bytes());
      while (!spec.done()) {
        const uint64_t spec_key = spec.varint();
        if (spec_key == ((3 << 3) | 0)) facts.model_type = static_cast<int>(spec.varint());
        else spec.skip(static_cast<int>(spec_key & 7));
      }
    } else if (field == 3 && wire == 2) {  // NormalizerSpec
      ProtoReader spec(reader.bytes());
      while (!spec.done()) {
        const uint64_t spec_key = spec.varint();
        if (spec_key == ((1 << 3) | 2)) facts.normalizer_name = std::string(spec.bytes());
        else if (spec_key == ((2 << 3) | 2)) facts.has_charsmap = !spec.bytes().empty();
        else if (spec_key == ((3 << 3) | 0)) facts.add_dummy_prefix = spec.varint() != 0;
        else if (spec_key == ((4 << 3) | 0)) facts.remove_extra_whitespaces = spec.varint() != 0;
        else spec.skip(static_cast<int>(spec_key & 7));
      }
    } else {
      reader.skip(wire);
    }
  }
  return facts;
}

}  // namespace

SentencePieceTokenizer::SentencePieceTokenizer(const std::string& path) : path_(path) {
  std::ifstream file(path, std::ios::binary);
  if (!file) throw file_error(path, "cannot open SentencePiece model");
  const std::string data((std::istreambuf_iterator<char>(file)), std::istreambuf_iterator<char>());
  ProtoFacts facts;
  try {
    facts = read_proto_facts(data);
  } catch (const Error& e) {
    throw file_error(path, std::string("not a SentencePiece model: ") + e.what());
  }
  if (facts.pieces.empty()) throw file_error(path, "not a SentencePiece model: no pieces");
  if (facts.model_type != 2)
    throw file_error(path, "SentencePiece model type " + std::to_string(facts.model_type) +
                               " is not supported (only BPE, type 2)");
  remove_extra_whitespaces_ = facts.remove_extra_whitespaces;
  // Normalizers other than identity (nmt_nfkc...) also apply a character map we do not
  // reproduce; text that is already NFKC-normal is unaffected.
  applies_charsmap_ = facts.has_charsmap;

  Vocab vocab;
  vocab.model = "llama";
  vocab.pre = "default";
  vocab.tokens = std::move(facts.pieces);
  vocab.scores = std::move(facts.scores);
  vocab.types = std::move(facts.piece_types);
  auto find = [&](int32_t type, const char* text) -> int64_t {
    for (size_t id = 0; id < vocab.tokens.size(); ++id)
      if (vocab.types[id] == type && (!text || vocab.tokens[id] == text)) return static_cast<int64_t>(id);
    return -1;
  };
  vocab.unk_id = find(kUnknown, nullptr);
  vocab.bos_id = find(kControl, "<s>");
  vocab.eos_id = find(kControl, "</s>");
  vocab.add_bos = true;
  vocab.add_eos = false;
  vocab.add_space_prefix = facts.add_dummy_prefix;
  merger_ = std::make_unique<ScoreMergeTokenizer>(std::move(vocab), path);
}

SentencePieceTokenizer::~SentencePieceTokenizer() = default;

std::string SentencePieceTokenizer::normalize(const std::string& text) const {
  if (!remove_extra_whitespaces_) return text;
  // libsentencepiece's remove_extra_whitespaces: drop leading and trailing spaces, collapse runs.
  std::string out;
  out.reserve(text.size());
  for (char c : text) {
    if (c == ' ' && (out.empty() || out.back() == ' ')) continue;
    out += c;
  }
  if (!out.empty() && out.back() == ' ') out.pop_back();
  return out;
}

std::vector<int32_t> SentencePieceTokenizer::encode(const std::string& text) const {
  return merger_->encode(normalize(text));
}
std::string SentencePieceTokenizer::decode(const std::vector<int32_t>& ids) const { return merger_->decode(ids); }
std::string SentencePieceTokenizer::token_text(int32_t id, int32_t previous_id) const {
  return merger_->token_text(id, previous_id);
}
int64_t SentencePieceTokenizer::vocab_size() const { return merger_->vocab_size(); }
int32_t SentencePieceTokenizer::bos_id() const { return merger_->bos_id(); }
int32_t SentencePieceTokenizer::eos_id() const { return merger_->eos_id(); }
Vocab SentencePieceTokenizer::to_vocab() const {
  Vocab vocab = merger_->to_vocab();
  vocab.add_bos = add_bos_;
  return vocab;
}

}  // namespace llmpress
