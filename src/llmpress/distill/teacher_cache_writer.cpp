// TeacherCache::build, apart from the reader (teacher_cache.cpp): it runs the teacher, so it needs the
// whole model code, which the reader and its fuzz harness do not.
#include <nlohmann/json.hpp>

#include <algorithm>

#include "llmpress/core/error.h"
#include "llmpress/core/progress.h"
#include "llmpress/distill/teacher_cache.h"
#include "llmpress/io/atomic_file.h"
#include "llmpress/model/transformer.h"

namespace llmpress {

namespace {

template <typename T>
void write_tensor(AtomicFile& out, const at::Tensor& t) {
  const at::Tensor c = t.contiguous();
  out.write(c.data_ptr<T>(), size_t(c.numel()) * sizeof(T));
}

}  // namespace

void TeacherCache::build(const std::string& path, const Transformer& teacher, const TrainingData& data,
                         std::vector<int64_t> rows, int64_t k, double temperature, int64_t batch_size, bool progress) {
  if (k < 1 || k > teacher.config.vocab_size)
    throw Error("--cache-topk must be in [1, " + std::to_string(teacher.config.vocab_size) + "]");
  std::sort(rows.begin(), rows.end());
  rows.erase(std::unique(rows.begin(), rows.end()), rows.end());
  const nlohmann::json header = {{"version", 1}, {"vocab", teacher.config.vocab_size}, {"k", k},
                                 {"temperature", temperature}, {"seqlen", data.seqlen()},
                                 {"entries", rows.size()}, {"data", std::to_string(data.fingerprint())}};
  const std::string text = header.dump();
  AtomicFile out(path);
  out.write(teacher_cache_layout::kMagic, sizeof(teacher_cache_layout::kMagic));
  const uint64_t length = text.size();
  out.write(&length, sizeof(length));
  out.write(text);
  out.write(rows.data(), rows.size() * sizeof(int64_t));
  at::NoGradGuard no_grad;
  Progress bar("teacher cache", int64_t(rows.size()), "rows", progress);
  for (size_t start = 0; start < rows.size(); start += size_t(batch_size)) {
    const std::vector<int64_t> chunk(rows.begin() + long(start), rows.begin() + long(std::min(rows.size(), start + size_t(batch_size))));
    const Batch batch = data.batch(chunk);
    const at::Tensor logits = teacher.forward(batch.inputs, nullptr, batch.layout.defined() ? &batch.layout : nullptr);
    const TopKTeacher top = make_topk_teacher(logits.to(at::kFloat), k, temperature);
    for (int64_t i = 0; i < int64_t(chunk.size()); ++i) {
      write_tensor<int32_t>(out, top.ids[i].to(at::kInt));
      write_tensor<float>(out, top.logprobs[i].to(at::kFloat));
      write_tensor<float>(out, top.log_tail[i].to(at::kFloat));
    }
    bar.update(int64_t(start + chunk.size()));
  }
  bar.finish();
  out.commit();
}

}  // namespace llmpress
