#pragma once
// The training loop every training command shares (train, distill, and later QAT): AdamW (libtorch's),
// a warm-up then cosine / linear / constant learning rate, gradient accumulation with token-averaged
// losses, global-norm clipping, periodic held-out perplexity, atomic checkpoints and bit-exact resume.
// What is minimised is the caller's: a LossFunction of one micro-batch.
#include <ATen/ATen.h>

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "llmpress/model/transformer.h"
#include "llmpress/train/data.h"
#include "llmpress/train/parameters.h"

namespace llmpress {

class Communicator;

struct TrainOptions {
  int64_t steps = 100;          // optimizer steps
  int64_t batch_size = 8;       // rows per forward pass
  int64_t grad_accum = 1;       // forward passes per step (rows per step = batch_size * grad_accum)
  double lr = 1e-4;             // peak learning rate
  double min_lr = 0.0;          // the schedule ends here (-1: lr / 10)
  int64_t warmup = 0;           // steps of linear warm-up: lr * (step + 1) / warmup
  std::string schedule = "cosine";  // cosine, linear or constant after the warm-up
  double beta1 = 0.9, beta2 = 0.95, eps = 1e-8;
  double weight_decay = 0.0;    // decoupled (AdamW), on matrices only
  bool decay_all = false;       // weight decay on norms and embeddings too
  double clip = 1.0;            // max global gradient norm; 0 = no clipping
  uint64_t seed = 0;            // data order (and the caller's sampling)
  std::string trainable;        // regex of parameter names to train (empty: every trainable tensor)
  bool checkpoint_layers = false;  // activation checkpointing per decoder layer
  bool bf16 = false;            // matrix products in bfloat16 (autocast); weights and optimizer float32

  std::vector<int32_t> eval_tokens;  // held-out text (empty: no evaluation)
  int64_t eval_every = 0;            // steps between evaluations (0: at the end only)
  int64_t eval_context = 256;
  int64_t eval_chunks = -1;

  std::string state_path;       // checkpoint file (empty: none)
  int64_t save_every = 0;       // steps between checkpoints (0: none before the end)
  bool resume = false;          // continue from state_path
  bool progress = true;
  // Data-parallel: this process's group (null: one process). Each rank runs its share of every
  // micro-batch's rows, gradients are summed across ranks, rank 0 evaluates and checkpoints;
  // batch_size stays the global batch, so the steps are those of one process (within float rounding).
  const Communicator* group = nullptr;
};

// Throws Error naming the flag for values out of range.
void check_train_options(const TrainOptions& options);
// The learning rate of `step` (0-based).
double learning_rate(const TrainOptions& options, int64_t step);

struct StepLoss {
  at::Tensor loss;    // scalar, token mean over batch.mask: what is differentiated
  at::Tensor report;  // scalar shown in the progress line (defaults to loss), e.g. the KD term
};
// Called once per micro-batch with the step it belongs to (for seeded sampling inside the loss).
using LossFunction = std::function<StepLoss(const Batch& batch, int64_t step)>;

struct EvalPoint {
  int64_t step = 0;  // optimizer steps done
  double perplexity = 0;
};

struct TrainResult {
  std::vector<double> losses;   // per step: token mean of the loss over the step's micro-batches
  std::vector<double> grad_norms;  // per step, before clipping
  std::vector<EvalPoint> evals;
  int64_t start_step = 0;       // > 0 when resumed
  int64_t tokens = 0;           // tokens run through the model (this run)
  double seconds = 0;
  double tokens_per_second = 0;
};

// Trains `model`'s parameters matching options.trainable on `data` with `loss`. With resume, the
// state file's parameters, optimizer moments and step are restored first (and must belong to the same
// model and options). Throws Error when a loss is NaN or infinite (the last checkpoint is kept).
// `extra`: tensors the loss owns (a hidden-state projection), trained, checkpointed and resumed with the model's.
TrainResult train(Transformer& model, const TrainingData& data, const LossFunction& loss, const TrainOptions& options,
                  const std::vector<Parameter>& extra = {});

// Plain language-model / SFT loss: token-mean cross-entropy of the student on the batch's labels.
LossFunction cross_entropy_loss(const Transformer& model, bool checkpoint_layers);

// Token-mean cross-entropy of logits [B, T, V] against the batch's labels; with record weights, each
// scored token's term is multiplied by its weight and the sum still divided by the scored-token count.
at::Tensor scored_cross_entropy(const at::Tensor& logits, const Batch& batch);

}  // namespace llmpress
