#pragma once
// A SentencePiece BPE .model (tokenizer.model). Its pieces are read from the protobuf and run by
// the score-merge tokenizer, with the model's remove_extra_whitespaces normalization (trim,
// collapse runs of spaces) applied first, as libsentencepiece does; GGUF/llama.cpp do not.
//
// Why not libsentencepiece: Debian's libsentencepiece exports its bundled protobuf 3.14, which
// clashes with libtorch's libprotobuf 3.21: any process loading both crashes at start-up. The
// tests compare against the spm_encode program instead.
#include <memory>

#include "llmpress/tokenizer/score_merge_tokenizer.h"

namespace llmpress {

class SentencePieceTokenizer : public Tokenizer {
 public:
  // Throws Error naming the file when it is not a SentencePiece BPE model.
  explicit SentencePieceTokenizer(const std::string& path);
  ~SentencePieceTokenizer() override;

  std::vector<int32_t> encode(const std::string& text) const override;
  std::string decode(const std::vector<int32_t>& ids) const override;
  std::string token_text(int32_t id, int32_t previous_id) const override;
  int64_t vocab_size() const override;
  int32_t bos_id() const override;
  int32_t eos_id() const override;
  bool add_bos() const override { return add_bos_; }
  // Pieces verbatim, scores, types from the model; model "llama"; add_space_prefix from the
  // normalizer's add_dummy_prefix.
  Vocab to_vocab() const override;

  void set_add_bos(bool add_bos) { add_bos_ = add_bos; }
  bool removes_extra_whitespaces() const { return remove_extra_whitespaces_; }
  // True when the model carries a normalization character map (e.g. nmt_nfkc) that is not applied.
  bool has_unapplied_charsmap() const { return applies_charsmap_; }

 private:
  std::string normalize(const std::string& text) const;

  std::string path_;
  std::unique_ptr<ScoreMergeTokenizer> merger_;
  bool add_bos_ = true;
  bool remove_extra_whitespaces_ = true;
  bool applies_charsmap_ = false;
};

}  // namespace llmpress
