#pragma once
// Training data as fixed rows of seqlen tokens, read in a seeded shuffled order:
//   plain text  one token stream cut into non-overlapping windows, every next token scored;
//   .jsonl      one record per line, packed greedily into rows (positions restart and attention stays
//               inside each record): {"prompt", "response"} (or "completion") scores only the response
//               and its end-of-sequence token (supervised fine-tuning); {"text"} scores every token;
//               an optional "weight" (default 1) scales the record's cross-entropy terms (step-by-step
//               multi-task training weighs rationale records against answer records).
// Row order depends only on the seed and the micro-batch index, so a resumed job reads what an
// uninterrupted one would.
#include <ATen/ATen.h>

#include <cstdint>
#include <string>
#include <vector>

#include "llmpress/model/transformer.h"

namespace llmpress {

class Tokenizer;

// The label of a position whose prediction is not scored (prompt, padding, a record's last token):
// PyTorch's cross-entropy ignore_index.
constexpr int64_t kNotScored = -100;

struct Batch {
  at::Tensor inputs;    // [B, T] int64
  at::Tensor labels;    // [B, T] int64: the token to predict at each position, -100 where not scored
  at::Tensor mask;      // [B, T] bool: scored positions
  PackedLayout layout;  // positions and documents of packed rows (undefined for plain windows)
  at::Tensor weights;   // [B, T] float: each position's record weight (undefined when every weight is 1)
  std::vector<int64_t> rows;  // dataset rows, in order
  int64_t scored() const { return mask.sum().item<int64_t>(); }
};

class TrainingData {
 public:
  // Throws naming the file and line for unreadable files, malformed JSON or records without the fields.
  static TrainingData load(const std::string& path, const Tokenizer& tokenizer, int64_t seqlen);
  // Rows from a token stream (no file): windows of seqlen + 1 overlapping by one token.
  static TrainingData from_tokens(const std::vector<int32_t>& tokens, int64_t seqlen);
  // One row per sequence of `sequences` [rows, seqlen + 1] int64 (generated data), every next token scored.
  static TrainingData from_sequences(const at::Tensor& sequences, const std::string& description);

  int64_t rows() const { return inputs_.size(0); }
  int64_t seqlen() const { return inputs_.size(1); }
  bool packed() const { return positions_.defined(); }
  Batch batch(const std::vector<int64_t>& rows) const;
  // The rows of micro-batch `index` (counted over the whole run): consecutive slices of a shuffle of
  // every row, reshuffled (seed + epoch) each time the data has been read once.
  std::vector<int64_t> rows_for(int64_t index, int64_t batch_size, uint64_t seed) const;
  // "2731512 tokens in 10669 rows of 256" (and, for records, how many were cut to fit).
  const std::string& description() const { return description_; }
  // A fingerprint of the rows (for teacher caches built from this data).
  uint64_t fingerprint() const;

 private:
  at::Tensor inputs_, labels_;        // [rows, T] int64
  at::Tensor positions_, documents_;   // [rows, T] int64, packed data only
  at::Tensor weights_;                 // [rows, T] float, records with a weight other than 1 only
  std::string description_;
};

}  // namespace llmpress
