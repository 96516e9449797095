#include "llmpress/cli/training.h"

#include <ATen/Parallel.h>

#include <nlohmann/json.hpp>

#include <filesystem>

#include "llmpress/core/error.h"
#include "llmpress/core/log.h"
#include "llmpress/core/progress.h"
#include "llmpress/data/text.h"
#include "llmpress/io/hf_config.h"
#include "llmpress/model/layer_source.h"
#include "llmpress/pipeline/model_sink.h"
#include "llmpress/train/parameters.h"

namespace llmpress::cli {

namespace {

OutputSpec output_spec(const TrainFlags& flags) {
  OutputSpec spec;
  spec.path = flags.output;
  spec.type = flags.type;
  return resolve_output(spec, "hf");
}

}  // namespace

std::pair<Checkpoint, Transformer> new_model(const std::string& config_path, const std::string& tokenizer, uint64_t seed) {
  namespace fs = std::filesystem;
  const nlohmann::json json = [&] {
    try {
      return nlohmann::json::parse(read_text_file(config_path));
    } catch (const nlohmann::json::exception& e) {
      throw Error(config_path + ": not JSON (" + std::string(e.what()) + ")");
    }
  }();
  Checkpoint origin;
  origin.path = fs::path(config_path).parent_path().string();
  if (origin.path.empty()) origin.path = ".";
  origin.config = parse_hf_config(json, config_path);
  origin.tokenizer_file = tokenizer;
  for (const char* name : {"tokenizer.model", "tokenizer.json"})
    if (origin.tokenizer_file.empty() && fs::exists(fs::path(origin.path) / name))
      origin.tokenizer_file = (fs::path(origin.path) / name).string();
  if (origin.tokenizer_file.empty())
    throw Error(config_path + ": no tokenizer.model or tokenizer.json beside it; name one with --tokenizer");
  const double range = json.is_object() ? json.value("initializer_range", 0.02) : 0.02;
  Transformer model = random_model(origin.config, range, seed);
  return {std::move(origin), std::move(model)};
}

void add_train_flags(CLI::App& command, TrainFlags& flags) {
  TrainOptions& t = flags.train;
  add_model_options(command, flags.model);
  command.add_option("-f,--file", flags.data,
                     "training data: plain text (windows of --seqlen), or .jsonl records {\"prompt\", \"response\"} "
                     "(loss on the response) or {\"text\"}, packed into rows")->required();
  command.add_option("-o,--output", flags.output, "output model: NAME.gguf for GGUF, otherwise a Hugging Face folder")
      ->required();
  command.add_option("--type", flags.type, "output type: GGUF F16, Q8_0, Q4_K_M, ... (a mix implies GGUF); HF F32, F16, BF16");
  command.add_option("--steps", t.steps, "optimizer steps")->capture_default_str();
  command.add_option("-b,--batch-size", t.batch_size, "rows per forward pass")->capture_default_str();
  command.add_option("--grad-accum", t.grad_accum, "forward passes per step (gradient accumulation)")->capture_default_str();
  command.add_option("--seqlen", flags.seqlen, "tokens per row")->capture_default_str();
  command.add_option("--lr", t.lr, "peak learning rate")->capture_default_str();
  command.add_option("--min-lr", t.min_lr, "learning rate at the end of the schedule (-1: lr / 10)")->capture_default_str();
  command.add_option("--warmup", t.warmup, "steps of linear warm-up")->capture_default_str();
  command.add_option("--schedule", t.schedule, "after the warm-up: cosine, linear or constant")->capture_default_str();
  command.add_option("--weight-decay", t.weight_decay, "AdamW's decoupled weight decay, on matrices")->capture_default_str();
  command.add_flag("--decay-all", t.decay_all, "weight decay on norms and embeddings too");
  command.add_option("--adam-beta1", t.beta1, "AdamW beta1")->capture_default_str();
  command.add_option("--adam-beta2", t.beta2, "AdamW beta2")->capture_default_str();
  command.add_option("--adam-eps", t.eps, "AdamW epsilon")->capture_default_str();
  command.add_option("--clip", t.clip, "max global gradient norm (0: no clipping)")->capture_default_str();
  command.add_option("--seed", t.seed, "seed of the data order and of sampling")->capture_default_str();
  command.add_option("--trainable", t.trainable,
                     "regex of the tensors to train, e.g. 'mlp' or 'layers\\.[0-3]\\.' (default: all; quantized layers stay frozen)");
  command.add_flag("--gradient-checkpointing", t.checkpoint_layers,
                   "recompute each decoder layer's activations in the backward pass (less memory, ~1/3 more compute)");
  command.add_flag("--bf16", t.bf16,
                   "mixed precision: matrix products in bfloat16 (autocast), weights, gradients and optimizer in float32; "
                   "fast where the CPU has AMX / AVX512-BF16 (or on a GPU), slow elsewhere");
  command.add_option("--eval", flags.eval_file, "held-out text: perplexity every --eval-every steps and at the end");
  command.add_option("--eval-every", t.eval_every, "steps between evaluations (0: at the end only)")->capture_default_str();
  command.add_option("--eval-ctx", t.eval_context, "--eval: tokens per window")->capture_default_str();
  command.add_option("--eval-chunks", t.eval_chunks, "--eval: windows evaluated (-1: the whole text)")->capture_default_str();
  command.add_option("--save-every", t.save_every, "steps between training checkpoints (0: none)")->capture_default_str();
  command.add_option("--state", t.state_path, "training checkpoint file (default: OUTPUT.train-state)");
  command.add_flag("--resume", t.resume, "continue from the training checkpoint (the same command, bit-exactly)");
  command.add_flag("--no-progress", flags.no_progress, "no progress line on stderr");
  add_distributed_flags(command, flags.distributed);
}

void prepare_training(TrainFlags& flags) {
  if (flags.model.threads > 0) at::set_num_threads(flags.model.threads);
  if (flags.seqlen < 2) throw Error("--seqlen must be at least 2");
  TrainOptions& t = flags.train;
  if (t.state_path.empty() && (t.save_every > 0 || t.resume)) t.state_path = flags.output + ".train-state";
  // A state file left by an interrupted job is never overwritten by a fresh start.
  if (!t.resume && !t.state_path.empty() && std::filesystem::exists(t.state_path))
    throw Error(t.state_path + " exists (an interrupted job's training state?): add --resume to continue it, "
                "or delete it to start afresh");
  t.progress = !flags.no_progress;
  check_train_options(t);
  output_spec(flags);  // a bad output name or type fails before the work
  check_readable_file(flags.data);  // before the work
  if (!flags.eval_file.empty()) check_readable_file(flags.eval_file);
  flags.group = start_data_parallel(flags.distributed, flags.model.threads);
  flags.train.group = flags.group.get();
}

std::vector<int32_t> eval_tokens(const TrainFlags& flags, const Tokenizer& tokenizer) {
  if (flags.eval_file.empty()) return {};
  return tokenizer.encode(read_text_file(flags.eval_file));
}

void write_trained_model(const Transformer& model, const Checkpoint& origin, const TrainFlags& flags,
                         const TrainResult& result) {
  if (!flags.writes()) return;  // rank 0 writes for the group
  const ResidentSource source(model);
  SinkInput sink{source, origin, output_spec(flags)};
  sink.shell = &model;
  const OutputSummary written = write_model(sink);
  if (!result.losses.empty())
    std::printf("trained %lld steps in %s (%.0f tokens/s); loss %.4f -> %.4f\n", (long long)result.losses.size(),
                format_duration(result.seconds).c_str(), result.tokens_per_second, result.losses.front(),
                result.losses.back());
  for (const EvalPoint& e : result.evals)
    std::printf("eval perplexity after %lld steps: %.4f\n", (long long)e.step, e.perplexity);
  std::printf("wrote %s (%s, %.2f MiB)\n", written.path.c_str(), written.description.c_str(),
              double(written.bytes) / 1048576.0);
  // Only a state this job wrote or resumed from is removed (never a file --state merely named).
  const bool own_state = flags.train.save_every > 0 || flags.train.resume;
  if (own_state && !flags.train.state_path.empty() && std::filesystem::exists(flags.train.state_path)) {
    std::filesystem::remove(flags.train.state_path);
    log_note("removed the training checkpoint " + flags.train.state_path + " (the job is complete)");
  }
}

}  // namespace llmpress::cli
