// Training as a recipe stage: `train` fine-tunes the model on text or prompt/response records, and
// `distill` makes it match a teacher (by default the recipe's own input model: prune -> distill is
// Minitron-style recovery). `qat` is distillation of a quantized model through fake-quant weights
// (quant/fake_quant.h) whose export is exactly the format it was trained on: the weights and the
// quantization parameters, or (learn: qparams) only the parameters, EfficientQAT's E2E-QP; `peqa`
// fine-tunes only the scales of a quantized model on task data; `lora` and `qa-lora` train low-rank
// adapters on the frozen (quantized) model (train/lora.h), written as the adapter or merged. All run on
// the whole loaded model, like the structured stages, and leave the trained embeddings, final norm and
// head beside the layers (the stage's shell file).
#include <filesystem>
#include <regex>

#include "llmpress/core/error.h"
#include "llmpress/core/log.h"
#include "llmpress/data/text.h"
#include "llmpress/distill/distiller.h"
#include "llmpress/io/checkpoint.h"
#include "llmpress/pipeline/method.h"
#include "llmpress/quant/fake_quant.h"
#include "llmpress/tokenizer/tokenizer.h"
#include "llmpress/train/data.h"
#include "llmpress/train/lora.h"
#include "llmpress/train/parameters.h"

namespace llmpress {

namespace {

std::vector<OptionSpec> training_options() {
  return {
      {"data", OptionType::String, nullptr, "training data: plain text, or .jsonl prompt/response (loss on the response) or text records"},
      {"steps", OptionType::Integer, 100, "optimizer steps"},
      {"batch_size", OptionType::Integer, 8, "rows per forward pass"},
      {"grad_accum", OptionType::Integer, 1, "forward passes per step"},
      {"seqlen", OptionType::Integer, 256, "tokens per row"},
      {"lr", OptionType::Number, 1e-4, "peak learning rate"},
      {"min_lr", OptionType::Number, 0.0, "learning rate at the end of the schedule (-1: lr / 10)"},
      {"warmup", OptionType::Integer, 0, "steps of linear warm-up"},
      {"schedule", OptionType::String, "cosine", "after the warm-up: cosine, linear or constant"},
      {"weight_decay", OptionType::Number, 0.0, "AdamW's decoupled weight decay, on matrices"},
      {"clip", OptionType::Number, 1.0, "max global gradient norm (0: none)"},
      {"seed", OptionType::Integer, 0, "seed of the data order and of sampling"},
      {"trainable", OptionType::String, nullptr, "regex of the tensors to train (default: all; outside qat / peqa quantized layers stay frozen)"},
      {"gradient_checkpointing", OptionType::Boolean, false, "recompute each layer's activations in the backward pass"},
      {"bf16", OptionType::Boolean, false, "matrix products in bfloat16 (autocast); weights and optimizer float32"},
      {"eval", OptionType::String, nullptr, "held-out text: perplexity at the end of the stage"},
      {"save_every", OptionType::Integer, 50, "steps between training checkpoints in the work folder (with --work-dir)"},
  };
}

TrainOptions train_options(const StageOptions& o) {
  TrainOptions t;
  t.steps = o.integer("steps");
  t.batch_size = o.integer("batch_size");
  t.grad_accum = o.integer("grad_accum");
  t.lr = o.number("lr");
  t.min_lr = o.number("min_lr");
  t.warmup = o.integer("warmup");
  t.schedule = o.text("schedule");
  t.weight_decay = o.number("weight_decay");
  t.clip = o.number("clip");
  t.seed = uint64_t(o.integer("seed"));
  t.trainable = o.text("trainable");
  t.checkpoint_layers = o.flag("gradient_checkpointing");
  t.bf16 = o.flag("bf16");
  return t;
}

DistillOptions distill_options(const StageOptions& o) {
  DistillOptions d;
  const std::string loss = o.text("loss");
  d.cross_entropy_only = loss == "ce";
  if (!d.cross_entropy_only) d.kd.divergence = parse_kd_divergence(loss);
  d.kd.beta = o.number("beta");
  d.kd.skew_alpha = o.number("alpha");
  d.kd.temperature = o.number("temperature");
  d.kd.ce_weight = o.number("ce_weight");
  d.on_policy = o.number("on_policy");
  d.sequence_kd = o.flag("seq_kd");
  d.sample_temperature = o.number("sample_temperature");
  d.checkpoint_layers = o.flag("gradient_checkpointing");
  return d;
}

void check_readable(const StageOptions& o, const std::string& name) {
  try {
    check_readable_file(o.text(name));
  } catch (const Error& e) {
    throw o.error(name, e.what());
  }
}

// What each `learn` choice trains, as a --trainable pattern (fake_quant.h names the tensors).
std::string learn_pattern(const std::string& learn) {
  if (learn == "all") return "";
  if (learn == "weights") return "_proj\\.weight(_q[a-z_]+)?$";  // the linear layers: latents and parameters
  if (learn == "qparams") return "\\.weight_q[a-z_]+$";
  if (learn == "scales") return "\\.weight_q(sub_)?scale$";
  throw Error("learn must be all, weights, qparams or scales, not '" + learn + "'");
}

bool fake_quantizes(const std::string& method) { return method == "qat" || method == "peqa"; }
bool adapts(const std::string& method) { return method == "lora" || method == "qa-lora"; }
bool distills(const std::string& method) { return method == "distill" || method == "qat"; }

ActivationQuant activation_quant(const StageOptions& o) {
  return {int(o.integer("act_bits")), int(o.integer("kv_bits"))};
}

LoraSpec lora_spec(const StageOptions& o) {
  LoraSpec spec;
  spec.rank = o.integer("rank");
  spec.alpha = o.number("alpha");
  spec.dropout = o.number("dropout");
  spec.group = o.method() == "qa-lora" ? o.integer("group") : 0;
  spec.seed = uint64_t(o.integer("seed"));
  return spec;
}

void check_training(const StageOptions& o, ModelState& state) {
  if (fake_quantizes(o.method())) {
    if (!state.quantized)
      throw o.error(o.method() + " trains a quantized model: put a quantize stage (rtn, gptq) before it, or start "
                    "from a GGUF or GPTQ model");
    if (o.method() == "qat") {
      try {
        learn_pattern(o.text("learn"));
      } catch (const Error& e) {
        throw o.error("learn", e.what());
      }
    }
  }
  if (adapts(o.method())) {
    try {
      lora_spec(o).check();
      if (o.method() == "qa-lora" && o.integer("group") < 1) throw Error("QA-LoRA's group must be at least 1");
      std::regex(o.text("target"), std::regex::ECMAScript);
    } catch (const std::regex_error& e) {
      throw o.error("target", "not a valid regex: " + std::string(e.what()));
    } catch (const Error& e) {
      throw o.error(e.what());
    }
    state.adapter = !o.flag("merge");
  }
  const bool self_generated = o.method() == "qat" && o.integer("generate") > 0;
  if (o.method() == "qat" && (o.integer("generate") < 0 || o.integer("greedy_tokens") < 0))
    throw o.error("generate", "generate and greedy_tokens must not be negative");
  if (o.method() == "qat") {
    try {
      activation_quant(o).check();
    } catch (const Error& e) {
      throw o.error(e.what());
    }
  }
  if (self_generated && o.given("data")) throw o.error("generate", "give data or generate, not both");
  if (!o.given("data") && !self_generated)
    throw o.error("data", o.method() + " needs training data: data: FILE (text or .jsonl)" +
                              (o.method() == "qat" ? std::string(", or generate: ROWS (data-free)") : ""));
  if (o.given("data")) check_readable(o, "data");
  if (o.given("eval")) check_readable(o, "eval");
  if (o.integer("seqlen") < 2) throw o.error("seqlen", "seqlen must be at least 2");
  if (o.integer("save_every") < 0) throw o.error("save_every", "save_every must not be negative");
  if (distills(o.method())) {
    if (o.given("teacher") && !std::filesystem::exists(o.text("teacher")))
      throw o.error("teacher", "the teacher " + o.text("teacher") + " does not exist");
    try {
      if (o.text("loss") != "ce") parse_kd_divergence(o.text("loss"));
    } catch (const Error& e) {
      throw o.error("loss", e.what());
    }
  }
  try {
    check_train_options(train_options(o));
    if (distills(o.method())) check_distill_options(distill_options(o));
  } catch (const Error& e) {
    throw o.error(e.what());
  }
}

// The teacher of a distilling stage: `teacher`, or the recipe's input model.
Transformer load_teacher(const StageOptions& o, const StageContext& context, const Tokenizer& tokenizer,
                         int64_t student_rows) {
  const std::string teacher_path = o.given("teacher") ? o.text("teacher") : context.origin.path;
  const Checkpoint opened = o.given("teacher") ? open_checkpoint(teacher_path) : Checkpoint{};
  const Checkpoint& teacher_checkpoint = o.given("teacher") ? opened : context.origin;
  const auto teacher_tokenizer = load_tokenizer(teacher_checkpoint);
  check_vocabularies(tokenizer, student_rows, *teacher_tokenizer, teacher_checkpoint.config.vocab_size);
  log_info("teacher: " + teacher_path);
  return Transformer::load(teacher_checkpoint, context.device);
}

std::string transform(Transformer& model, const StageOptions& o, const StageContext& context) {
  const auto tokenizer = load_tokenizer(context.origin);
  const Transformer teacher = distills(o.method()) ? load_teacher(o, context, *tokenizer, model.config.vocab_size)
                                                   : Transformer{};
  const TrainingData data = [&] {
    if (o.given("data")) return TrainingData::load(o.text("data"), *tokenizer, o.integer("seqlen"));
    const int64_t rows = o.integer("generate"), length = o.integer("seqlen") + 1;
    log_info(strprintf("data-free: the teacher writes %lld rows of %lld tokens", (long long)rows, (long long)length));
    const at::Tensor sequences =
        self_generated_sequences(teacher, rows, length, tokenizer->vocab_size(), tokenizer->bos_id(),
                                 o.integer("greedy_tokens"), o.number("sample_temperature"),
                                 uint64_t(o.integer("seed")), o.integer("batch_size"), context.progress);
    return TrainingData::from_sequences(sequences, strprintf("%lld teacher-written rows of %lld", (long long)rows,
                                                             (long long)length - 1));
  }();
  TrainOptions t = train_options(o);
  t.progress = context.progress;
  t.group = context.group;
  if (context.user_work_dir) {  // a work folder of the user's: checkpoints, and --resume continues
    t.state_path = context.stage_dir + "/train-state";
    t.save_every = o.integer("save_every");
    t.resume = context.resume && std::filesystem::exists(t.state_path);
  }
  if (o.given("eval")) t.eval_tokens = tokenizer->encode(read_text_file(o.text("eval")));
  model = deep_copy(model);  // its own tensors, whatever the source shares
  int64_t fake_quantized = 0;
  if (fake_quantizes(o.method())) {
    // Training only the parameters keeps the stored codes (PEQA, E2E-QP); training the weights recomputes them.
    const std::string learn = o.method() == "peqa" ? "scales" : o.text("learn");
    fake_quantized = wrap_fake_quant(model, /*fixed_codes=*/learn == "qparams" || learn == "scales");
    if (fake_quantized == 0) throw o.error(o.method() + ": the model has no integer-grid or ggml k-/legacy-quant layer to train");
    if (!o.given("trainable")) t.trainable = learn_pattern(learn);
    // The simulated activation bits train with the model; the output stores weights only (a runtime quantizes
    // activations and the KV cache itself: perplexity --act-bits / --kv-bits simulates it).
    if (o.method() == "qat") model.set_activation_quant(activation_quant(o));
  }
  int64_t adapted = 0;
  if (adapts(o.method())) {
    adapted = add_lora(model, lora_spec(o), o.text("target"));
    if (!o.given("trainable")) t.trainable = "\\.weight_lora_[AB]$";
  }

  TrainResult result;
  if (!distills(o.method())) {
    result = train(model, data, cross_entropy_loss(model, t.checkpoint_layers), t);
  } else {
    const DistillOptions d = distill_options(o);
    result = train(model, data,
                   distillation_loss(model, &teacher, nullptr, tokenizer->vocab_size(), d, t.seed), t);
  }
  if (fake_quantized > 0) export_fake_quant(model);  // the weights the last training forward used, as stored
  if (!t.state_path.empty()) std::filesystem::remove(t.state_path);  // the stage is finished
  std::string what = fake_quantized > 0 ? strprintf("%lld fake-quantized layers ", (long long)fake_quantized) : "";
  if (adapted > 0) {
    what = strprintf("%lld adapters (rank %lld) ", (long long)adapted, (long long)o.integer("rank"));
    if (o.flag("merge")) {
      const MergeCounts merged = merge_lora(model);
      context.notes->push_back(strprintf(
          "merged: %lld adapters into Q4_1 / Q5_1 block mins (exact up to their f16 storage), %lld re-quantized "
          "onto their base's format, %lld into dense weights",
          (long long)merged.exact, (long long)merged.requantized, (long long)merged.dense));
    }
  }
  std::string summary = strprintf("%strained %lld steps on %s: loss %.4f -> %.4f", what.c_str(), (long long)t.steps,
                                  data.description().c_str(), result.losses.empty() ? 0.0 : result.losses.front(),
                                  result.losses.empty() ? 0.0 : result.losses.back());
  if (!result.evals.empty()) summary += strprintf("; eval perplexity %.4f", result.evals.back().perplexity);
  return summary;
}

MethodSpec training_method(const std::string& name) {
  MethodSpec m;
  m.name = name;
  m.family = name == "peqa" || adapts(name) ? "finetune" : name;
  m.options = training_options();
  if (adapts(name)) {
    std::vector<OptionSpec> lora = {
        {"rank", OptionType::Integer, 8, "rank r of each adapter"},
        {"alpha", OptionType::Number, 16.0, "the update is scaled by alpha / r (PEFT's lora_alpha)"},
        {"dropout", OptionType::Number, 0.0, "dropout on the adapter's input during training (PEFT's lora_dropout)"},
        {"target", OptionType::String, "",
         "regex of the decoder linears that get an adapter (searched in model.layers.N.self_attn.q_proj ...; "
         "default: all, as QLoRA)"},
        {"merge", OptionType::Boolean, false,
         "merge the adapters into the weights and write the model (quantized bases re-quantized onto their own "
         "format; qa-lora onto Q4_1 / Q5_1 exactly) instead of the adapter"},
    };
    if (name == "qa-lora")
      lora.push_back({"group", OptionType::Integer, 32,
                      "input columns averaged into one adapter input: the quantization group (32 for Q4_1 / Q5_1 "
                      "blocks), so the merged update is constant in each group"});
    m.options.insert(m.options.begin() + 1, lora.begin(), lora.end());
  }
  if (name == "train") {
    m.summary = "fine-tune on text or prompt/response records (cross-entropy, AdamW)";
  } else if (name == "peqa") {
    m.summary = "PEQA: fine-tune only the scales of a quantized model on task data (cross-entropy); same format out";
  } else if (name == "lora") {
    m.summary = "LoRA on the frozen (quantized) model, QLoRA-style (cross-entropy); writes the adapter (PEFT folder "
                "or llama.cpp GGUF) or merges it";
  } else if (name == "qa-lora") {
    m.summary = "QA-LoRA: group-pooled LoRA whose merge into Q4_1 / Q5_1 block mins keeps the model quantized";
  } else {
    m.summary = name == "qat" ? "quantization-aware training: KD from the recipe's input into the quantized model "
                                "through fake-quant weights, exported exactly onto the format it trained"
                              : "knowledge distillation from a teacher (default: the recipe's input model)";
    const std::vector<OptionSpec> kd = {
        {"teacher", OptionType::String, nullptr, "teacher model (default: the recipe's model, before any stage)"},
        {"loss", OptionType::String, "fkl", "ce, fkl, rkl, jsd, tvd, skl or srkl"},
        {"beta", OptionType::Number, 0.5, "jsd: beta (0 -> forward KL, 1 -> reverse KL)"},
        {"alpha", OptionType::Number, 0.1, "skl / srkl: skew alpha"},
        {"temperature", OptionType::Number, 1.0, "softmax temperature of teacher and student"},
        {"ce_weight", OptionType::Number, 0.0, "weight of hard-label cross-entropy in the loss (0..1)"},
        {"on_policy", OptionType::Number, 0.0, "fraction of steps on the student's own continuations (GKD lambda)"},
        {"seq_kd", OptionType::Boolean, false, "sequence-level KD: rows continued by the teacher"},
        {"sample_temperature", OptionType::Number, 1.0, "on_policy / seq_kd sampling temperature (0: greedy)"},
    };
    m.options.insert(m.options.begin() + 1, kd.begin(), kd.end());
    if (name == "qat") {
      const std::vector<OptionSpec> qat = {
          {"learn", OptionType::String, "all",
           "all (weights, norms, embeddings and quantization parameters), weights (the quantized layers and their "
           "parameters), qparams (only scales, zero points and mins: E2E-QP) or scales"},
          {"generate", OptionType::Integer, 0,
           "data-free (LLM-QAT), instead of data: the teacher writes this many rows of seqlen + 1 tokens"},
          {"greedy_tokens", OptionType::Integer, 3,
           "generate: tokens after the random first one chosen greedily, before sampling at sample_temperature"},
          {"act_bits", OptionType::Integer, 0,
           "train with every decoder linear's input fake-quantized per token to these bits (LLM-QAT's A8; 0: off)"},
          {"kv_bits", OptionType::Integer, 0, "train with keys and values fake-quantized per token and head (KV4, KV8; 0: off)"}};
      m.options.insert(m.options.begin() + 1, qat.begin(), qat.end());
    }
  }
  m.trains = true;
  m.needs_calibration = [](const StageOptions&) { return false; };
  m.check = check_training;
  m.transform = transform;
  return m;
}

const MethodRegistration train_stage(training_method("train"));
const MethodRegistration distill_stage(training_method("distill"));
const MethodRegistration qat_stage(training_method("qat"));
const MethodRegistration peqa_stage(training_method("peqa"));
const MethodRegistration lora_stage(training_method("lora"));
const MethodRegistration qa_lora_stage(training_method("qa-lora"));

}  // namespace

}  // namespace llmpress
