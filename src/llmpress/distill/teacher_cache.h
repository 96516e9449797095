#pragma once
// A teacher's top-k next-token distribution for the rows a training run reads, computed once and then
// read from a memory-mapped file instead of running the teacher at every step (offline KD).
//
// File layout (little-endian):
//   bytes 0..7    magic "LPTCACHE"
//   bytes 8..15   u64 header length H
//   H bytes       JSON: {"version": 1, "vocab": V, "k": K, "temperature": T, "seqlen": L,
//                        "entries": N, "data": "<fingerprint of the training rows>"}
//   N x i64       the dataset row of each entry, strictly increasing
//   N entries     each: ids i32 [L, K], log-probabilities f32 [L, K] (at temperature T, normalized over
//                 the whole vocabulary, largest first), log of the remaining mass f32 [L]
// Every size and offset is checked against the file before it is read.
#include <ATen/ATen.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "llmpress/distill/losses.h"
#include "llmpress/train/data.h"

namespace llmpress {

class MappedFile;

// The layout's constants, shared by the writer (build, teacher_cache_writer.cpp) and the reader (open).
namespace teacher_cache_layout {
inline constexpr char kMagic[8] = {'L', 'P', 'T', 'C', 'A', 'C', 'H', 'E'};
inline uint64_t entry_bytes(int64_t seqlen, int64_t k) { return uint64_t(seqlen) * (uint64_t(k) * 8 + 4); }
}  // namespace teacher_cache_layout

class TeacherCache {
 public:
  // Runs `teacher` over `rows` of `data` (each row once, batches of batch_size) and writes the cache
  // atomically to `path`.
  static void build(const std::string& path, const Transformer& teacher, const TrainingData& data,
                    std::vector<int64_t> rows, int64_t k, double temperature, int64_t batch_size, bool progress);
  // Opens a cache; Error when it is not one, is truncated, or was made from other data.
  static TeacherCache open(const std::string& path, const TrainingData& data);

  // The cached teacher for a batch's rows (each must be in the cache).
  TopKTeacher lookup(const std::vector<int64_t>& rows) const;
  int64_t k() const { return k_; }
  int64_t vocab() const { return vocab_; }
  double temperature() const { return temperature_; }
  uint64_t bytes() const;

 private:
  std::shared_ptr<MappedFile> file_;
  std::vector<int64_t> rows_;
  uint64_t entries_offset_ = 0;
  int64_t k_ = 0, vocab_ = 0, seqlen_ = 0;
  double temperature_ = 1;
};

}  // namespace llmpress
