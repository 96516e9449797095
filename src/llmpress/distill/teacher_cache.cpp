#include "llmpress/distill/teacher_cache.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstring>

#include "llmpress/core/error.h"
#include "llmpress/io/mapped_file.h"

namespace llmpress {

using teacher_cache_layout::entry_bytes;
using teacher_cache_layout::kMagic;

TeacherCache TeacherCache::open(const std::string& path, const TrainingData& data) {
  TeacherCache cache;
  cache.file_ = MappedFile::open(path);
  const MappedFile& f = *cache.file_;
  f.require(0, 16, "the cache header");
  if (std::memcmp(f.data(), kMagic, sizeof(kMagic)) != 0) throw Error(path + ": not an llmpress teacher cache");
  uint64_t length = 0;
  std::memcpy(&length, f.data() + 8, sizeof(length));
  if (length > f.size()) throw Error(path + ": truncated (header length " + std::to_string(length) + ")");
  f.require(16, length, "the cache header");
  nlohmann::json header;
  try {
    header = nlohmann::json::parse(f.data() + 16, f.data() + 16 + length);
    cache.vocab_ = header.at("vocab").get<int64_t>();
    cache.k_ = header.at("k").get<int64_t>();
    cache.seqlen_ = header.at("seqlen").get<int64_t>();
    cache.temperature_ = header.at("temperature").get<double>();
    const int64_t entries = header.at("entries").get<int64_t>();
    if (header.at("version").get<int>() != 1 || cache.vocab_ < 1 || cache.k_ < 1 || cache.k_ > cache.vocab_ ||
        cache.vocab_ > INT32_MAX || cache.seqlen_ < 1 || entries < 0 || entries > int64_t(f.size() / 8))
      throw Error("bad sizes");
    cache.rows_.resize(size_t(entries));
  } catch (const std::exception& e) {
    throw Error(path + ": unreadable cache header (" + e.what() + ")");
  }
  if (header["data"] != std::to_string(data.fingerprint()) || cache.seqlen_ != data.seqlen())
    throw Error(path + ": made from other training data or another --seqlen; delete it to build a new one");
  const uint64_t rows_bytes = cache.rows_.size() * sizeof(int64_t);
  f.require(16 + length, rows_bytes, "the row table");
  if (rows_bytes > 0) std::memcpy(cache.rows_.data(), f.data() + 16 + length, rows_bytes);  // no null dest
  for (size_t i = 0; i < cache.rows_.size(); ++i)
    if (cache.rows_[i] < 0 || cache.rows_[i] >= data.rows() || (i > 0 && cache.rows_[i] <= cache.rows_[i - 1]))
      throw Error(path + ": the row table is corrupt");
  cache.entries_offset_ = 16 + length + rows_bytes;
  // Divided, not multiplied: a hostile k times the entries could wrap around 64 bits.
  if (!cache.rows_.empty() && entry_bytes(cache.seqlen_, cache.k_) > f.size() / cache.rows_.size())
    throw Error(path + ": truncated (the cached rows need more bytes than the file has)");
  f.require(cache.entries_offset_, cache.rows_.size() * entry_bytes(cache.seqlen_, cache.k_), "the cached rows");
  return cache;
}

TopKTeacher TeacherCache::lookup(const std::vector<int64_t>& rows) const {
  const int64_t b = int64_t(rows.size()), L = seqlen_, K = k_;
  TopKTeacher t;
  t.ids = at::empty({b, L, K}, at::kLong);
  t.logprobs = at::empty({b, L, K}, at::kFloat);
  t.log_tail = at::empty({b, L}, at::kFloat);
  t.temperature = temperature_;
  t.vocab_size = vocab_;
  for (int64_t i = 0; i < b; ++i) {
    const auto it = std::lower_bound(rows_.begin(), rows_.end(), rows[size_t(i)]);
    if (it == rows_.end() || *it != rows[size_t(i)])
      throw Error(file_->path() + ": row " + std::to_string(rows[size_t(i)]) + " is not in the cache (it was built for "
                  "fewer steps or another --seed or --batch-size); delete it to build a new one");
    const uint8_t* p = file_->data() + entries_offset_ + uint64_t(it - rows_.begin()) * entry_bytes(L, K);
    auto* base = const_cast<uint8_t*>(p);  // read-only mapping: from_blob views are only copied from
    t.ids[i].copy_(at::from_blob(base, {L, K}, at::kInt));
    t.logprobs[i].copy_(at::from_blob(base + L * K * 4, {L, K}, at::kFloat));
    t.log_tail[i].copy_(at::from_blob(base + L * K * 8, {L}, at::kFloat));
  }
  const at::Tensor bad = (t.ids < 0) | (t.ids >= vocab_);
  if (bad.any().item<bool>()) throw Error(file_->path() + ": a cached token id is outside the vocabulary");
  return t;
}

uint64_t TeacherCache::bytes() const { return file_->size(); }

}  // namespace llmpress
