#pragma once
// Standard knowledge distillation as a training loss: the student matches the teacher's next-token
// distribution (losses.h) on the training rows, on rows the student itself continued (on-policy, GKD),
// or on rows the teacher continued (sequence-level KD). The teacher is frozen and run without a graph,
// online or from a top-k cache (teacher_cache.h).
#include <memory>
#include <string>

#include "llmpress/distill/losses.h"
#include "llmpress/distill/teacher_cache.h"
#include "llmpress/train/trainer.h"

namespace llmpress {

class Tokenizer;

struct DistillOptions {
  bool cross_entropy_only = false;  // --loss ce: plain fine-tuning, the baseline every KD loss is compared with
  KdOptions kd;
  double on_policy = 0;             // fraction of steps whose rows the student continues (GKD's lambda)
  bool sequence_kd = false;         // every step's rows continued by the teacher (then the loss on those)
  double sample_temperature = 1.0;  // of the continuations
  double hidden_weight = 0;         // > 0: plus this times the hidden-state loss between paired layers
  HiddenLoss hidden_loss = HiddenLoss::Mse;  // (uniform_layer_pairs; hidden_projection where widths differ)
  bool checkpoint_layers = false;
};

// Throws Error naming the flag for options out of range or that do not go together.
void check_distill_options(const DistillOptions& options);

// Teacher and student must predict over one vocabulary: the same tokens (padding rows beyond the
// tokenizer's vocabulary may differ, and are left out of the loss). Error naming the first difference.
void check_vocabularies(const Tokenizer& student, int64_t student_rows, const Tokenizer& teacher, int64_t teacher_rows);

// The projection the hidden-state loss trains when student and teacher widths differ (one [d_teacher,
// d_student] matrix shared by every layer pair, seeded; discarded after training); none otherwise.
std::vector<Parameter> hidden_projection(const Transformer& student, const Transformer& teacher,
                                         const DistillOptions& options, uint64_t seed);

// The loss of one micro-batch. `teacher` may be null when every step reads the cache (`cache` set and
// no on-policy / sequence-level steps); `vocab` is the tokenizer's vocabulary size (the scored ids);
// `projection`: hidden_projection's, trained with the student (pass it to train() as `extra`).
LossFunction distillation_loss(const Transformer& student, const Transformer* teacher, const TeacherCache* cache,
                               int64_t vocab, const DistillOptions& options, uint64_t seed,
                               const std::vector<Parameter>& projection = {});

// Continues the first half of each row of `batch` (plain windows) with `model`'s samples at
// `temperature`, seeded: the rows become prompt + continuation, scored on the continuation only.
Batch continue_rows(const Transformer& model, const Batch& batch, double temperature, uint64_t seed);

// LLM-QAT's data-free training data: `rows` sequences of `length` tokens written by `model`, in batches
// of `batch`. Each starts with `bos_id` (none when negative) and a token drawn uniformly from the first
// `vocab` ids, continues with `greedy` argmax tokens, then samples at `temperature`; seeded.
at::Tensor self_generated_sequences(const Transformer& model, int64_t rows, int64_t length, int64_t vocab,
                                    int64_t bos_id, int64_t greedy, double temperature, uint64_t seed,
                                    int64_t batch, bool progress);

// Packed prompt/response rows: each record's response is replaced by `model`'s own continuation of its
// prompt, as long as the response was (GKD on instruction data), so the layout and the scored positions
// stay as they were; seeded.
Batch continue_records(const Transformer& model, const Batch& batch, double temperature, uint64_t seed);

}  // namespace llmpress
