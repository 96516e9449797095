#include "llmpress/distill/distiller.h"

#include <ATen/CPUGeneratorImpl.h>

#include <random>

#include "llmpress/core/error.h"
#include "llmpress/core/progress.h"
#include "llmpress/tokenizer/tokenizer.h"
#include "llmpress/train/forward.h"
#include "llmpress/train/trainer.h"

namespace llmpress {

namespace {

// Whether step `step` is an on-policy one: a seeded draw per step, the same in a resumed run.
bool on_policy_step(uint64_t seed, int64_t step, double fraction) {
  if (fraction <= 0) return false;
  std::mt19937_64 rng(seed * 0x9E3779B97F4A7C15ULL + uint64_t(step));
  return double(rng() >> 11) * 0x1.0p-53 < fraction;
}

// The next token of each row from the last position's logits [B, vocab]: greedy at temperature 0,
// else sampled from `gen`. [B, 1] int64 on the CPU.
at::Tensor next_tokens(const at::Tensor& logits, double temperature, at::Generator& gen) {
  const at::Tensor last = logits.select(1, logits.size(1) - 1).to(at::kFloat).cpu();
  return temperature == 0 ? last.argmax(-1, /*keepdim=*/true)
                          : at::multinomial(at::softmax(last / temperature, -1), 1, false, gen);
}

}  // namespace

void check_distill_options(const DistillOptions& o) {
  if (!o.cross_entropy_only) check_kd_options(o.kd);
  if (o.on_policy < 0 || o.on_policy > 1) throw Error("--on-policy must be in [0, 1]");
  if (o.sample_temperature < 0) throw Error("--sample-temperature must not be negative (0: greedy)");
  if (o.sequence_kd && o.on_policy > 0) throw Error("--seq-kd and --on-policy exclude each other (teacher or student continuations)");
}

void check_vocabularies(const Tokenizer& student, int64_t student_rows, const Tokenizer& teacher, int64_t teacher_rows) {
  const Vocab s = student.to_vocab(), t = teacher.to_vocab();
  if (s.tokens.size() != t.tokens.size())
    throw Error("the student's vocabulary has " + std::to_string(s.tokens.size()) + " tokens and the teacher's " +
                std::to_string(t.tokens.size()) + ": distillation needs one vocabulary (use a student made from the teacher)");
  for (size_t i = 0; i < s.tokens.size(); ++i)
    if (s.tokens[i] != t.tokens[i])
      throw Error("student and teacher vocabularies differ at token " + std::to_string(i) + " ('" + s.tokens[i] +
                  "' vs '" + t.tokens[i] + "'): distillation needs one vocabulary");
  const int64_t vocab = int64_t(s.tokens.size());
  if (student_rows < vocab || teacher_rows < vocab)
    throw Error("a model has fewer output rows (" + std::to_string(std::min(student_rows, teacher_rows)) +
                ") than its tokenizer has tokens (" + std::to_string(vocab) + ")");
}

Batch continue_rows(const Transformer& model, const Batch& batch, double temperature, uint64_t seed) {
  at::NoGradGuard no_grad;
  const int64_t B = batch.inputs.size(0), T = batch.inputs.size(1);
  const int64_t prompt = std::max<int64_t>(1, T / 2);
  const int64_t generate = T + 1 - prompt;  // the sequence is T + 1 tokens: inputs and the last label
  at::Generator gen = at::detail::createCPUGenerator(seed);
  KVCache cache = model.make_cache(B, T);
  at::Tensor sequence = batch.inputs.narrow(1, 0, prompt).to(model.device());
  at::Tensor logits = model.forward(sequence, &cache);
  for (int64_t i = 0; i < generate; ++i) {
    const at::Tensor next = next_tokens(logits, temperature, gen);
    sequence = at::cat({sequence, next.to(sequence.device())}, 1);
    if (i + 1 < generate) logits = model.forward(sequence.narrow(1, sequence.size(1) - 1, 1), &cache);
  }
  Batch out;
  out.inputs = sequence.narrow(1, 0, T).cpu();
  out.labels = sequence.narrow(1, 1, T).cpu().clone();
  out.mask = (at::arange(T, at::kLong) >= prompt - 1).unsqueeze(0).expand({B, T}).clone();
  out.labels.masked_fill_(out.mask.logical_not(), kNotScored);
  out.rows = batch.rows;
  return out;
}

at::Tensor self_generated_sequences(const Transformer& model, int64_t rows, int64_t length, int64_t vocab,
                                    int64_t bos_id, int64_t greedy, double temperature, uint64_t seed,
                                    int64_t batch, bool progress) {
  at::NoGradGuard no_grad;
  const int64_t lead = bos_id >= 0 ? 2 : 1;
  if (rows < 1 || length <= lead || vocab < 1 || batch < 1) throw Error("self-generated data: nothing to generate");
  at::Generator gen = at::detail::createCPUGenerator(seed);
  at::Tensor out = at::empty({rows, length}, at::kLong);
  Progress bar("generate", rows, "tok", progress);
  for (int64_t start = 0; start < rows; start += batch) {
    const int64_t B = std::min(batch, rows - start);
    at::Tensor sequence = at::randint(vocab, {B, 1}, gen, at::kLong);
    if (bos_id >= 0) sequence = at::cat({at::full({B, 1}, bos_id, at::kLong), sequence}, 1);
    KVCache cache = model.make_cache(B, length);
    at::Tensor logits = model.forward(sequence.to(model.device()), &cache);
    while (sequence.size(1) < length) {
      const bool sampled = sequence.size(1) - lead >= greedy;
      // Scored over the tokenizer's ids only (padding rows of the head never appear).
      const at::Tensor next = next_tokens(logits.narrow(-1, 0, vocab), sampled ? temperature : 0.0, gen);
      sequence = at::cat({sequence, next.cpu()}, 1);
      if (sequence.size(1) < length) logits = model.forward(next.to(model.device()), &cache);
    }
    out.narrow(0, start, B).copy_(sequence);
    bar.update(start + B, (start + B) * length);
  }
  bar.finish();
  return out;
}

Batch continue_records(const Transformer& model, const Batch& batch, double temperature, uint64_t seed) {
  at::NoGradGuard no_grad;
  at::Generator gen = at::detail::createCPUGenerator(seed);
  Batch out = batch;
  out.inputs = batch.inputs.to(at::kCPU, at::kLong).clone();
  out.labels = batch.labels.to(at::kCPU, at::kLong).clone();
  const at::Tensor mask = batch.mask.to(at::kCPU, at::kBool), documents = batch.layout.documents.to(at::kCPU);
  auto inputs = out.inputs.accessor<int64_t, 2>();
  auto labels = out.labels.accessor<int64_t, 2>();
  const auto scored = mask.accessor<bool, 2>();
  const auto doc = documents.accessor<int64_t, 2>();
  const int64_t B = out.inputs.size(0), T = out.inputs.size(1);
  for (int64_t r = 0; r < B; ++r) {
    for (int64_t start = 0, end = 0; start < T; start = end) {
      end = start;
      while (end < T && doc[r][end] == doc[r][start]) ++end;
      int64_t first = start;  // the record's first scored position: its prompt ends there
      while (first < end && !scored[r][first]) ++first;
      if (first == end) continue;
      KVCache cache = model.make_cache(1, end - start);
      at::Tensor logits = model.forward(out.inputs[r].narrow(0, start, first - start + 1).unsqueeze(0).to(model.device()),
                                        &cache);
      for (int64_t q = first; q < end; ++q) {
        const int64_t next = next_tokens(logits, temperature, gen).item<int64_t>();
        labels[r][q] = scored[r][q] ? next : kNotScored;
        if (q + 1 == end) break;
        inputs[r][q + 1] = next;
        logits = model.forward(at::full({1, 1}, next, at::kLong).to(model.device()), &cache);
      }
    }
  }
  return out;
}

std::vector<Parameter> hidden_projection(const Transformer& student, const Transformer& teacher,
                                         const DistillOptions& o, uint64_t seed) {
  const int64_t d_student = student.config.hidden_size, d_teacher = teacher.config.hidden_size;
  if (o.hidden_weight <= 0 || d_student == d_teacher) return {};
  at::Generator generator = at::detail::createCPUGenerator(seed);
  const at::Tensor weight = make_hidden_projection(d_teacher, d_student, at::kFloat, generator).to(student.device());
  return {Parameter{"distill.hidden_projection", weight.detach().requires_grad_(true), {}, true}};
}

LossFunction distillation_loss(const Transformer& student, const Transformer* teacher, const TeacherCache* cache,
                               int64_t vocab, const DistillOptions& o, uint64_t seed,
                               const std::vector<Parameter>& projection) {
  if (!o.cross_entropy_only && !teacher && !cache) throw Error("knowledge distillation needs a teacher or a teacher cache");
  if ((o.sequence_kd || o.on_policy > 0) && !teacher) throw Error("--on-policy and --seq-kd need the teacher model");
  if (o.hidden_weight > 0 && (!teacher || o.cross_entropy_only))
    throw Error("--hidden-weight needs a KD loss and the teacher model (not its cache)");
  if (o.hidden_weight > 0 && teacher->config.hidden_size != student.config.hidden_size && projection.empty())
    throw Error("--hidden-weight: the student's hidden size differs from the teacher's and no projection was given");
  std::vector<at::Tensor> projections;
  for (const Parameter& p : projection) projections.push_back(p.tensor);
  if (cache && (cache->vocab() != vocab || cache->temperature() != o.kd.temperature))
    throw Error("the teacher cache holds a vocabulary of " + std::to_string(cache->vocab()) + " at temperature " +
                std::to_string(cache->temperature()) + "; this run needs " + std::to_string(vocab) + " at " +
                std::to_string(o.kd.temperature) + " (delete the cache to rebuild it)");
  return [&student, teacher, cache, vocab, o, seed, projections](const Batch& given, int64_t step) -> StepLoss {
    const uint64_t step_seed = seed * 1000003 + uint64_t(step);
    Batch batch = given;
    bool generated = true;
    const auto continue_with = given.layout.defined() ? continue_records : continue_rows;
    if (o.sequence_kd) {
      batch = continue_with(*teacher, given, o.sample_temperature, step_seed);
    } else if (on_policy_step(seed, step, o.on_policy)) {
      batch = continue_with(student, given, o.sample_temperature, step_seed);
    } else {
      generated = false;
    }
    const PackedLayout* layout = batch.layout.defined() ? &batch.layout : nullptr;
    ForwardOptions f;
    f.checkpoint_layers = o.checkpoint_layers;
    f.keep_hidden = o.hidden_weight > 0;
    const ForwardResult out = training_forward(student, batch.inputs, layout, f);
    const at::Tensor logits = out.logits.narrow(-1, 0, vocab);
    const at::Tensor labels = batch.labels.to(logits.device());
    if (o.cross_entropy_only) return {scored_cross_entropy(logits, batch), {}};
    if (batch.weights.defined())
      throw Error("record weights scale cross-entropy only: train weighted records with `llmpress train` "
                  "(or `distill --loss ce`), or remove their \"weight\" fields");
    const at::Tensor mask = batch.mask.to(logits.device());
    const at::Tensor hard = labels.clamp_min(0);  // kd_loss reads labels at scored positions only
    if (cache && !generated && o.hidden_weight == 0) return {kd_loss_topk(logits, cache->lookup(batch.rows), mask, hard, o.kd).loss, {}};
    ForwardResult from_teacher;
    {
      at::NoGradGuard no_grad;
      ForwardOptions t;
      t.keep_hidden = o.hidden_weight > 0;
      from_teacher = training_forward(*teacher, batch.inputs, layout, t);
    }
    at::Tensor loss = kd_loss(logits, from_teacher.logits.narrow(-1, 0, vocab), mask, hard, o.kd).loss;
    if (o.hidden_weight > 0)
      loss = loss + o.hidden_weight * hidden_state_loss(out.hidden, from_teacher.hidden,
                                                        uniform_layer_pairs(int64_t(out.hidden.size()),
                                                                            int64_t(from_teacher.hidden.size())),
                                                        mask, o.hidden_loss, projections);
    return {loss, {}};
  };
}

}  // namespace llmpress
