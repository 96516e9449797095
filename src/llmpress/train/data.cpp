#include "llmpress/train/data.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <random>
#include <sstream>

#include "llmpress/core/error.h"
#include "llmpress/core/log.h"
#include "llmpress/data/text.h"
#include "llmpress/tokenizer/tokenizer.h"

namespace llmpress {

namespace {

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// One record: its tokens and, per token, whether predicting it is scored.
struct Record {
  std::vector<int32_t> tokens;
  std::vector<bool> scored;
  double weight = 1;
};

std::vector<Record> read_records(const std::string& path, const Tokenizer& tokenizer) {
  std::vector<Record> records;
  for_each_json_line(path, [&](const nlohmann::json& record, const std::string& where) {
    const auto text_field = [&](const char* key) -> const nlohmann::json* {
      if (!record.is_object() || !record.contains(key)) return nullptr;
      if (!record[key].is_string()) throw Error(where + ": \"" + key + "\" must be a string");
      return &record[key];
    };
    Record r;
    if (tokenizer.add_bos()) r.tokens.push_back(tokenizer.bos_id()), r.scored.push_back(false);
    const auto append = [&](const std::string& text, bool scored) {
      for (int32_t id : tokenizer.encode(text)) r.tokens.push_back(id), r.scored.push_back(scored);
    };
    const nlohmann::json* prompt = text_field("prompt");
    const nlohmann::json* response = text_field("response");
    if (!response) response = text_field("completion");
    if (prompt && response) {
      append(prompt->get<std::string>(), false);
      append(response->get<std::string>(), true);
    } else if (const nlohmann::json* text = text_field("text")) {
      append(text->get<std::string>(), true);
    } else {
      throw Error(where + ": a record needs \"prompt\" and \"response\" (or \"completion\"), or \"text\"");
    }
    if (record.contains("weight")) {
      const nlohmann::json& w = record["weight"];
      if (!w.is_number() || !std::isfinite(w.get<double>()) || w.get<double>() < 0)
        throw Error(where + ": \"weight\" must be a number of at least 0");
      r.weight = w.get<double>();
    }
    r.tokens.push_back(tokenizer.eos_id());
    r.scored.push_back(true);
    records.push_back(std::move(r));
  });
  if (records.empty()) throw Error(path + ": no records");
  return records;
}

}  // namespace

TrainingData TrainingData::from_tokens(const std::vector<int32_t>& tokens, int64_t seqlen) {
  if (seqlen < 1) throw Error("--seqlen must be at least 1");
  const int64_t rows = (int64_t(tokens.size()) - 1) / seqlen;
  if (rows < 1)
    throw Error("the text has " + std::to_string(tokens.size()) + " tokens, fewer than one row of --seqlen " +
                std::to_string(seqlen) + " + 1");
  const at::Tensor stream = at::tensor(at::IntArrayRef(std::vector<int64_t>(tokens.begin(), tokens.end())), at::kLong);
  TrainingData data;
  // Row r predicts tokens r*T+1 .. r*T+T from r*T .. r*T+T-1.
  data.inputs_ = stream.narrow(0, 0, rows * seqlen).view({rows, seqlen}).clone();
  data.labels_ = stream.narrow(0, 1, rows * seqlen).view({rows, seqlen}).clone();
  data.description_ = std::to_string(tokens.size()) + " tokens in " + std::to_string(rows) + " rows of " + std::to_string(seqlen);
  return data;
}

TrainingData TrainingData::from_sequences(const at::Tensor& sequences, const std::string& description) {
  if (sequences.dim() != 2 || sequences.size(0) < 1 || sequences.size(1) < 2)
    throw Error("generated training data must be at least one sequence of two tokens");
  const at::Tensor s = sequences.to(at::kCPU, at::kLong);
  TrainingData data;
  data.inputs_ = s.narrow(1, 0, s.size(1) - 1).clone();
  data.labels_ = s.narrow(1, 1, s.size(1) - 1).clone();
  data.description_ = description;
  return data;
}

TrainingData TrainingData::load(const std::string& path, const Tokenizer& tokenizer, int64_t seqlen) {
  if (!ends_with(path, ".jsonl")) {
    try {
      return from_tokens(tokenizer.encode(read_text_file(path)), seqlen);
    } catch (const Error& e) {
      throw Error(path + ": " + e.what());
    }
  }
  if (seqlen < 2) throw Error("--seqlen must be at least 2 for records");
  const std::vector<Record> records = read_records(path, tokenizer);
  // Greedy packing: a record that does not fit in what is left of a row starts the next one; a record
  // longer than a row is cut. Each record contributes length - 1 predictions.
  std::vector<std::vector<int64_t>> inputs, labels, positions, documents;
  std::vector<std::vector<float>> weights;
  const auto new_row = [&] {
    inputs.emplace_back(), labels.emplace_back(), positions.emplace_back(), documents.emplace_back(), weights.emplace_back();
  };
  const bool weighted = std::any_of(records.begin(), records.end(), [](const Record& r) { return r.weight != 1; });
  int64_t cut = 0, scored = 0, document = 0;
  new_row();
  for (const Record& r : records) {
    int64_t length = int64_t(r.tokens.size()) - 1;  // predictions
    if (length > seqlen) length = seqlen, ++cut;
    if (int64_t(inputs.back().size()) + length > seqlen) new_row();
    for (int64_t t = 0; t < length; ++t) {
      inputs.back().push_back(r.tokens[size_t(t)]);
      labels.back().push_back(r.scored[size_t(t + 1)] ? r.tokens[size_t(t + 1)] : kNotScored);
      positions.back().push_back(t);
      documents.back().push_back(document);
      weights.back().push_back(float(r.weight));
      scored += r.scored[size_t(t + 1)];
    }
    ++document;
  }
  const int64_t rows = int64_t(inputs.size());
  TrainingData data;
  data.inputs_ = at::zeros({rows, seqlen}, at::kLong);
  data.labels_ = at::full({rows, seqlen}, kNotScored, at::kLong);
  data.positions_ = at::zeros({rows, seqlen}, at::kLong);
  data.documents_ = at::full({rows, seqlen}, -1, at::kLong);  // padding: its own document, never attended to
  if (weighted) data.weights_ = at::zeros({rows, seqlen}, at::kFloat);
  for (int64_t i = 0; i < rows; ++i) {
    const int64_t n = int64_t(inputs[size_t(i)].size());
    const auto put = [&](at::Tensor& dst, const std::vector<int64_t>& src) {
      dst[i].narrow(0, 0, n).copy_(at::tensor(at::IntArrayRef(src), at::kLong));
    };
    put(data.inputs_, inputs[size_t(i)]);
    put(data.labels_, labels[size_t(i)]);
    put(data.positions_, positions[size_t(i)]);
    put(data.documents_, documents[size_t(i)]);
    if (weighted) data.weights_[i].narrow(0, 0, n).copy_(at::tensor(at::ArrayRef<float>(weights[size_t(i)])));
  }
  data.description_ = std::to_string(records.size()) + " records (" + std::to_string(scored) +
                      " scored tokens) packed in " + std::to_string(rows) + " rows of " + std::to_string(seqlen);
  if (weighted) data.description_ += ", weighted";
  if (cut > 0) {
    data.description_ += ", " + std::to_string(cut) + " cut to fit";
    log_warning(path + ": " + std::to_string(cut) + " records are longer than --seqlen " + std::to_string(seqlen) +
                " and were cut");
  }
  return data;
}

Batch TrainingData::batch(const std::vector<int64_t>& rows) const {
  const at::Tensor index = at::tensor(at::IntArrayRef(rows), at::kLong);
  Batch b;
  b.inputs = inputs_.index_select(0, index);
  b.labels = labels_.index_select(0, index);
  b.mask = b.labels != kNotScored;
  if (packed()) b.layout = {positions_.index_select(0, index), documents_.index_select(0, index)};
  if (weights_.defined()) b.weights = weights_.index_select(0, index);
  b.rows = rows;
  return b;
}

std::vector<int64_t> TrainingData::rows_for(int64_t index, int64_t batch_size, uint64_t seed) const {
  const int64_t n = rows();
  std::vector<int64_t> out;
  int64_t cached_epoch = -1;
  std::vector<int64_t> order;
  for (int64_t k = index * batch_size; k < (index + 1) * batch_size; ++k) {
    const int64_t epoch = k / n;
    if (epoch != cached_epoch) {
      // Fisher-Yates with our own draw: the same order on every standard library.
      std::mt19937_64 rng(seed * 1000003 + uint64_t(epoch));
      order.resize(size_t(n));
      for (int64_t i = 0; i < n; ++i) order[size_t(i)] = i;
      for (int64_t i = n - 1; i > 0; --i) std::swap(order[size_t(i)], order[size_t(rng() % uint64_t(i + 1))]);
      cached_epoch = epoch;
    }
    out.push_back(order[size_t(k % n)]);
  }
  return out;
}

uint64_t TrainingData::fingerprint() const {
  // FNV-1a over the rows' tokens and labels.
  uint64_t h = 1469598103934665603ull;
  for (const at::Tensor& t : {inputs_, labels_}) {
    const at::Tensor c = t.contiguous();
    const auto* p = c.data_ptr<int64_t>();
    for (int64_t i = 0; i < c.numel(); ++i) h = (h ^ uint64_t(p[i])) * 1099511628211ull;
  }
  if (weights_.defined()) {
    const at::Tensor c = weights_.contiguous();
    const auto* p = c.data_ptr<float>();
    for (int64_t i = 0; i < c.numel(); ++i) {
      uint32_t bits;
      std::memcpy(&bits, &p[i], sizeof bits);
      h = (h ^ bits) * 1099511628211ull;
    }
  }
  return h;
}

}  // namespace llmpress
