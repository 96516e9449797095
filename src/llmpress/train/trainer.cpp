#include "llmpress/train/trainer.h"

#include <torch/optim/adamw.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>

#include "llmpress/core/error.h"
#include "llmpress/core/log.h"
#include "llmpress/core/progress.h"
#include "llmpress/distributed/communicator.h"
#include "llmpress/eval/perplexity.h"
#include "llmpress/io/tensor_file.h"
#include "llmpress/train/forward.h"

namespace llmpress {

namespace {

using torch::optim::AdamW;
using torch::optim::AdamWOptions;
using torch::optim::AdamWParamState;

std::string state_key(const at::Tensor& t) { return c10::guts::to_string(t.unsafeGetTensorImpl()); }

// What a state file must agree on to be resumed: everything that shapes the trajectory.
nlohmann::json job_identity(const TrainOptions& o, const TrainingData& data, const std::vector<Parameter>& params) {
  nlohmann::json names = nlohmann::json::array();
  for (const Parameter& p : params) names.push_back(p.name);
  return {{"steps", o.steps}, {"batch_size", o.batch_size}, {"grad_accum", o.grad_accum}, {"lr", o.lr},
          {"min_lr", o.min_lr}, {"warmup", o.warmup}, {"schedule", o.schedule}, {"betas", {o.beta1, o.beta2}},
          {"eps", o.eps}, {"weight_decay", o.weight_decay}, {"decay_all", o.decay_all}, {"clip", o.clip},
          {"seed", o.seed}, {"bf16", o.bf16}, {"data", std::to_string(data.fingerprint())}, {"parameters", names}};
}

void save_state(const std::string& path, int64_t step, const std::vector<Parameter>& params, AdamW& optimizer,
                const nlohmann::json& identity, const TrainResult& result) {
  TensorMap tensors;
  nlohmann::json adam_steps = nlohmann::json::object();
  for (const Parameter& p : params) {
    tensors["param." + p.name] = p.tensor.detach();
    const auto it = optimizer.state().find(state_key(p.tensor));
    if (it == optimizer.state().end()) continue;
    const auto& s = static_cast<const AdamWParamState&>(*it->second);
    tensors["adam." + p.name + ".exp_avg"] = s.exp_avg();
    tensors["adam." + p.name + ".exp_avg_sq"] = s.exp_avg_sq();
    adam_steps[p.name] = s.step();
  }
  nlohmann::json evals = nlohmann::json::array();
  for (const EvalPoint& e : result.evals) evals.push_back({e.step, e.perplexity});
  save_tensor_file(path, tensors,
                   {{"format", "llmpress training state"}, {"step", step}, {"job", identity}, {"adam_steps", adam_steps},
                    {"losses", result.losses}, {"grad_norms", result.grad_norms}, {"evals", evals}});
}

int64_t read_state(const std::string& path, const std::vector<Parameter>& params, AdamW& optimizer,
                   const nlohmann::json& identity, TrainResult& result) {
  if (!std::filesystem::exists(path))
    throw Error(path + ": no training state to resume from (run without --resume to start afresh)");
  nlohmann::json meta;
  const TensorMap tensors = load_tensor_file(path, at::kCPU, &meta);
  if (!meta.is_object() || meta.value("format", "") != "llmpress training state" || !meta.contains("step"))
    throw Error(path + ": not an llmpress training state");
  const nlohmann::json& saved = meta["job"];
  for (const auto& [key, value] : identity.items())
    if (!saved.contains(key) || saved[key] != value)
      throw Error(path + ": written by a different job (its " + key + " differs); resume with the options it was "
                  "started with, or start afresh without --resume");
  at::NoGradGuard no_grad;
  for (const Parameter& p : params) {
    const auto it = tensors.find("param." + p.name);
    if (it == tensors.end() || it->second.sizes() != p.tensor.sizes())
      throw Error(path + ": " + p.name + " is missing or has another shape");
    p.tensor.copy_(it->second);
    if (!meta["adam_steps"].contains(p.name)) continue;
    auto state = std::make_unique<AdamWParamState>();
    state->step(meta["adam_steps"][p.name].get<int64_t>());
    const auto moment = [&](const std::string& which) {
      const auto m = tensors.find("adam." + p.name + "." + which);
      if (m == tensors.end() || m->second.sizes() != p.tensor.sizes())
        throw Error(path + ": the optimizer state of " + p.name + " is incomplete");
      return m->second.to(p.tensor.device()).clone();
    };
    state->exp_avg(moment("exp_avg"));
    state->exp_avg_sq(moment("exp_avg_sq"));
    optimizer.state()[state_key(p.tensor)] = std::move(state);
  }
  const int64_t step = meta["step"].get<int64_t>();
  result.losses = meta.value("losses", std::vector<double>{});
  result.grad_norms = meta.value("grad_norms", std::vector<double>{});
  for (const auto& e : meta.value("evals", nlohmann::json::array())) result.evals.push_back({e[0], e[1]});
  if (step < 0 || step > identity["steps"].get<int64_t>() || int64_t(result.losses.size()) != step)
    throw Error(path + ": inconsistent step count");
  return step;
}

// A state file whose JSON has the wrong shapes or types is one error naming the file.
int64_t load_state(const std::string& path, const std::vector<Parameter>& params, AdamW& optimizer,
                   const nlohmann::json& identity, TrainResult& result) {
  try {
    return read_state(path, params, optimizer, identity, result);
  } catch (const nlohmann::json::exception& e) {
    throw file_error(path, std::string("not a valid training state (") + e.what() + "); delete it to start afresh");
  }
}

// Crash test point: with LLMPRESS_TEST_KILL_AFTER_STEPS=N the process ends abruptly (as under kill -9,
// exit status 137) once step N is done and saved, so tests can check that --resume continues it.
void crash_test_point(int64_t step) {
  static const long limit = [] {
    const char* env = std::getenv("LLMPRESS_TEST_KILL_AFTER_STEPS");
    return env && *env ? std::atol(env) : 0L;
  }();
  if (limit > 0 && step >= limit) std::_Exit(137);
}

double evaluate(const Transformer& model, const TrainOptions& o) {
  at::NoGradGuard no_grad;
  PerplexityOptions p;
  p.context = o.eval_context;
  p.max_chunks = o.eval_chunks;
  p.progress = false;
  return perplexity(model, o.eval_tokens, p).perplexity;
}

// Data-parallel start: every rank must train the same parameters on the same data, from the same
// state: rank 0's parameters, and on resume its step and optimizer moments (only rank 0 reads and
// writes state files, so the ranks need no shared file system). Returns the step to start from.
int64_t start_together(const Communicator& group, const std::vector<Parameter>& params, AdamW& optimizer,
                      const TrainingData& data, int64_t trainable_count, int64_t start) {
  group.check_same(int64_t(data.fingerprint()), "the training data");
  group.check_same(trainable_count, "the number of trainable parameters");
  at::NoGradGuard no_grad;
  // Per parameter: the optimizer step its moments belong to (-1: no moments yet), then the step.
  at::Tensor steps = at::full({int64_t(params.size()) + 1}, -1, at::kLong);
  for (size_t i = 0; i < params.size(); ++i) {
    const auto it = optimizer.state().find(state_key(params[i].tensor));
    if (it != optimizer.state().end()) steps[int64_t(i)] = static_cast<const AdamWParamState&>(*it->second).step();
  }
  steps[int64_t(params.size())] = start;
  group.broadcast(steps);
  for (size_t i = 0; i < params.size(); ++i) {
    at::Tensor values = params[i].tensor.detach();
    group.broadcast(values);
    const int64_t step = steps[int64_t(i)].item<int64_t>();
    if (step < 0) continue;
    const std::string key = state_key(params[i].tensor);
    if (!optimizer.state().count(key)) {
      auto state = std::make_unique<AdamWParamState>();
      state->exp_avg(at::zeros_like(values));
      state->exp_avg_sq(at::zeros_like(values));
      optimizer.state()[key] = std::move(state);
    }
    auto& state = static_cast<AdamWParamState&>(*optimizer.state()[key]);
    state.step(step);
    at::Tensor m = state.exp_avg(), v = state.exp_avg_sq();
    group.broadcast(m);
    group.broadcast(v);
  }
  return steps[int64_t(params.size())].item<int64_t>();
}

// Sums the step's gradients, loss terms and token count over the ranks (each rank's terms are already
// weighted by its share of the step's scored tokens). A gradient some rank never produced is zero
// there; one no rank produced stays undefined (the optimizer skips it, as in one process).
void sum_over_ranks(const Communicator& group, const std::vector<Parameter>& params, double& loss, double& report,
                    int64_t& tokens) {
  at::Tensor totals = at::zeros({3 + int64_t(params.size())}, at::kDouble);
  auto t = totals.accessor<double, 1>();
  t[0] = loss, t[1] = report, t[2] = double(tokens);
  for (size_t i = 0; i < params.size(); ++i) t[3 + i] = params[i].tensor.grad().defined() ? 1 : 0;
  group.all_reduce(totals);
  t = totals.accessor<double, 1>();
  loss = t[0], report = t[1], tokens = int64_t(t[2]);
  std::vector<at::Tensor> grads;
  for (size_t i = 0; i < params.size(); ++i) {
    if (t[3 + i] == 0) continue;
    at::Tensor& grad = params[i].tensor.mutable_grad();
    if (!grad.defined()) grad = at::zeros_like(params[i].tensor);
    grads.push_back(grad);
  }
  group.all_reduce_sum(grads);
}

}  // namespace

void check_train_options(const TrainOptions& o) {
  const auto need = [](bool ok, const std::string& message) {
    if (!ok) throw Error(message);
  };
  need(o.steps >= 1, "--steps must be at least 1");
  need(o.batch_size >= 1, "--batch-size must be at least 1");
  need(o.grad_accum >= 1, "--grad-accum must be at least 1");
  need(o.lr >= 0 && std::isfinite(o.lr), "--lr must not be negative");
  need(o.min_lr == -1 || (o.min_lr >= 0 && o.min_lr <= o.lr), "--min-lr must be in [0, --lr] (or -1 for lr / 10)");
  need(o.warmup >= 0 && o.warmup <= o.steps, "--warmup must be in [0, --steps]");
  need(o.schedule == "cosine" || o.schedule == "linear" || o.schedule == "constant",
       "--schedule must be cosine, linear or constant, not '" + o.schedule + "'");
  need(o.beta1 >= 0 && o.beta1 < 1 && o.beta2 >= 0 && o.beta2 < 1, "--adam-beta1 and --adam-beta2 must be in [0, 1)");
  need(o.eps > 0, "--adam-eps must be positive");
  need(o.weight_decay >= 0, "--weight-decay must not be negative");
  need(o.clip >= 0, "--clip must not be negative (0: no clipping)");
  need(o.eval_every >= 0 && o.save_every >= 0, "--eval-every and --save-every must not be negative");
  need(!o.resume || !o.state_path.empty(), "--resume needs a training state file");
  need(!o.group || o.batch_size >= o.group->world_size(),
       "--batch-size is the global batch: it must be at least the number of processes");
}

double learning_rate(const TrainOptions& o, int64_t step) {
  if (step < o.warmup) return o.lr * double(step + 1) / double(o.warmup);
  const double min_lr = o.min_lr < 0 ? o.lr / 10 : o.min_lr;
  const double progress = double(step - o.warmup) / double(std::max<int64_t>(1, o.steps - o.warmup));
  if (o.schedule == "cosine") return min_lr + 0.5 * (1 + std::cos(M_PI * progress)) * (o.lr - min_lr);
  if (o.schedule == "linear") return o.lr + (min_lr - o.lr) * progress;
  return o.lr;
}

TrainResult train(Transformer& model, const TrainingData& data, const LossFunction& loss, const TrainOptions& o,
                  const std::vector<Parameter>& extra) {
  check_train_options(o);
  std::vector<Parameter> params = select_trainable(model, o.trainable);
  params.insert(params.end(), extra.begin(), extra.end());
  std::vector<at::Tensor> decay, no_decay;
  for (const Parameter& p : params) (p.decay || o.decay_all ? decay : no_decay).push_back(p.tensor);
  const AdamWOptions base = AdamWOptions(o.lr).betas({o.beta1, o.beta2}).eps(o.eps).weight_decay(0.0);
  std::vector<torch::optim::OptimizerParamGroup> groups;
  if (!decay.empty()) groups.emplace_back(decay, std::make_unique<AdamWOptions>(AdamWOptions(base).weight_decay(o.weight_decay)));
  if (!no_decay.empty()) groups.emplace_back(no_decay, std::make_unique<AdamWOptions>(base));
  AdamW optimizer(groups, base);

  TrainResult result;
  const nlohmann::json identity = job_identity(o, data, params);
  const Communicator* group = o.group;
  const bool writes = !group || group->writes();
  int64_t start = 0;
  if (o.resume && writes) {  // data-parallel: rank 0 reads the state and sends it to the others
    start = load_state(o.state_path, params, optimizer, identity, result);
    log_info(strprintf("resumed from %s at step %lld of %lld", o.state_path.c_str(), (long long)start, (long long)o.steps));
  }
  int64_t trainable_count = 0;
  for (const Parameter& p : params) trainable_count += p.tensor.numel();
  if (group) start = start_together(*group, params, optimizer, data, trainable_count, start);
  result.start_step = start;
  log_info(strprintf("training %lld parameters (%zu tensors) on %s; %lld steps of %lld x %lld rows of %lld tokens%s",
                     (long long)trainable_count, params.size(), data.description().c_str(), (long long)o.steps,
                     (long long)o.grad_accum, (long long)o.batch_size, (long long)data.seqlen(),
                     group ? strprintf(", data-parallel over %d processes", group->world_size()).c_str() : ""));

  Progress progress("train", o.steps - start, "tok", o.progress && writes);
  int64_t last_saved = start;
  const auto save = [&](int64_t step) {
    if (o.state_path.empty()) return;
    if (writes) save_state(o.state_path, step, params, optimizer, identity, result);
    if (group) group->barrier();  // every rank knows the checkpoint exists before going on
    last_saved = step;
  };
  const auto diverged = [&](int64_t step, const char* what, double value) {
    const std::string kept = o.state_path.empty() || last_saved == 0
                                 ? std::string("no checkpoint was written")
                                 : strprintf("the checkpoint of step %lld is kept in %s: lower --lr and --resume from it",
                                             (long long)last_saved, o.state_path.c_str());
    return Error(strprintf("step %lld: the %s is %g; training stopped (%s)", (long long)step + 1, what, value, kept.c_str()));
  };
  for (int64_t step = start; step < o.steps; ++step) {
    const double lr = learning_rate(o, step);
    for (auto& group : optimizer.param_groups()) static_cast<AdamWOptions&>(group.options()).lr(lr);
    optimizer.zero_grad();
    std::vector<Batch> batches;
    int64_t scored = 0;  // over the whole step (every rank's share)
    for (int64_t m = 0; m < o.grad_accum; ++m) {
      const std::vector<int64_t> rows = data.rows_for(step * o.grad_accum + m, o.batch_size, o.seed);
      if (!group) {
        batches.push_back(data.batch(rows));
        scored += batches.back().scored();
        continue;
      }
      const auto [begin, end] = share_of(int64_t(rows.size()), group->rank(), group->world_size());
      batches.push_back(data.batch(std::vector<int64_t>(rows.begin() + begin, rows.begin() + end)));
      scored += data.batch(rows).scored();
    }
    if (scored == 0) throw Error(strprintf("step %lld has no scored token (every label is masked)", (long long)step + 1));
    double step_loss = 0, step_report = 0;
    int64_t step_tokens = 0;
    for (const Batch& batch : batches) {
      step_tokens += batch.inputs.numel();
      if (batch.scored() == 0) continue;  // a rank's share without scored tokens adds nothing
      const StepLoss r = [&] {
        const Bf16Autocast autocast(model.device(), o.bf16);
        return loss(batch, step);
      }();
      const double weight = double(batch.scored()) / double(scored);  // token mean over the whole step
      (r.loss * weight).backward();
      step_loss += r.loss.item<double>() * weight;
      step_report += (r.report.defined() ? r.report : r.loss).item<double>() * weight;
    }
    if (group) sum_over_ranks(*group, params, step_loss, step_report, step_tokens);
    result.tokens += step_tokens;
    if (!std::isfinite(step_loss)) throw diverged(step, "loss", step_loss);
    double norm2 = 0;
    for (const Parameter& p : params) {
      at::Tensor grad = p.tensor.mutable_grad();
      if (!grad.defined()) continue;
      if (p.removed.defined()) grad.masked_fill_(p.removed, 0);  // pruned weights stay exactly zero
      norm2 += grad.pow(2).sum().item<double>();
    }
    const double norm = std::sqrt(norm2);
    if (!std::isfinite(norm)) throw diverged(step, "gradient norm", norm);
    if (o.clip > 0 && norm > o.clip)  // torch.nn.utils.clip_grad_norm_'s coefficient
      for (const Parameter& p : params)
        if (p.tensor.grad().defined()) p.tensor.mutable_grad().mul_(o.clip / (norm + 1e-6));
    optimizer.step();
    result.losses.push_back(step_loss);
    result.grad_norms.push_back(norm);
    progress.update(step + 1 - start, result.tokens, strprintf("loss %.4f  lr %.2e", step_report, lr));
    const bool last = step + 1 == o.steps;
    if (writes && !o.eval_tokens.empty() && ((o.eval_every > 0 && (step + 1) % o.eval_every == 0) || last)) {
      result.evals.push_back({step + 1, evaluate(model, o)});
      log_info(strprintf("step %lld: eval perplexity %.4f", (long long)step + 1, result.evals.back().perplexity));
    }
    if (o.save_every > 0 && (step + 1) % o.save_every == 0 && !last) save(step + 1);
    crash_test_point(step + 1);
  }
  progress.finish();
  result.seconds = progress.elapsed_seconds();
  result.tokens_per_second = result.seconds > 0 ? double(result.tokens) / result.seconds : 0;
  for (const Parameter& p : params) p.tensor.requires_grad_(false);
  return result;
}

LossFunction cross_entropy_loss(const Transformer& model, bool checkpoint_layers) {
  return [&model, checkpoint_layers](const Batch& batch, int64_t) -> StepLoss {
    ForwardOptions f;
    f.checkpoint_layers = checkpoint_layers;
    return {scored_cross_entropy(training_forward(model, batch.inputs, &batch.layout, f).logits, batch), {}};
  };
}

at::Tensor scored_cross_entropy(const at::Tensor& logits, const Batch& batch) {
  const at::Tensor flat = logits.reshape({-1, logits.size(-1)}).to(at::kFloat);
  const at::Tensor labels = batch.labels.reshape({-1}).to(logits.device());
  if (!batch.weights.defined()) return at::cross_entropy_loss(flat, labels);
  const at::Tensor terms = at::cross_entropy_loss(flat, labels, {}, at::Reduction::None);
  const at::Tensor scored = (labels != kNotScored).sum().clamp_min(1);
  return (terms * batch.weights.reshape({-1}).to(terms.device())).sum() / scored;
}

}  // namespace llmpress
