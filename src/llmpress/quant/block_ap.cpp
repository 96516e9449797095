#include "llmpress/quant/block_ap.h"

#include <torch/optim/adamw.h>

#include <cmath>

#include "llmpress/core/error.h"
#include "llmpress/core/log.h"
#include "llmpress/quant/fake_quant.h"
#include "llmpress/train/forward.h"

namespace llmpress {

void BlockApOptions::check() const {
  if (epochs < 1) throw Error("block-ap: epochs must be at least 1");
  if (batch_size < 1) throw Error("block-ap: batch_size must be at least 1");
  if (!(weight_lr >= 0) || !(quant_lr >= 0) || weight_lr + quant_lr <= 0)
    throw Error("block-ap: weight_lr and quant_lr must not be negative, and one must be positive");
  if (!(min_lr_factor >= 1)) throw Error("block-ap: min_lr_factor must be at least 1");
  if (!(weight_decay >= 0)) throw Error("block-ap: weight_decay must not be negative");
}

BlockApCompressor::BlockApCompressor(std::unique_ptr<Compressor> init, BlockApOptions options)
    : init_(std::move(init)), options_(options) {
  options_.check();
}

std::string BlockApCompressor::describe() const {
  return strprintf("block-ap (%s; %lld epochs, batch %lld, lr %g / %g, min factor %g, wd %g%s)", init_->describe().c_str(),
                   (long long)options_.epochs, (long long)options_.batch_size, options_.weight_lr, options_.quant_lr,
                   options_.min_lr_factor, options_.weight_decay, options_.bf16 ? ", bf16" : "");
}

std::shared_ptr<LinearWeight> BlockApCompressor::compress(const std::string& name, const Linear& linear,
                                                          const InputStats& stats) {
  if (options_.latent_from_original) originals_[name] = linear.weight->dense();
  return init_->compress(name, linear, stats);
}

namespace {

// torch.optim.lr_scheduler.CosineAnnealingLR at `step` of `total`.
double cosine(double lr, double min_lr, int64_t step, int64_t total) {
  return min_lr + (lr - min_lr) * (1 + std::cos(M_PI * double(step) / double(total))) / 2;
}

}  // namespace

void BlockApCompressor::train_layer(int64_t index, DecoderLayer& layer, const Transformer& shell,
                                    const at::Tensor& inputs, const at::Tensor& targets) {
  at::AutoGradMode grad(true);
  std::vector<at::Tensor> weights, qparams;
  int wrapped = 0;
  for (const std::string& name : DecoderLayer::linear_names()) {
    Linear& linear = layer.linear(name);
    if (!FakeQuantWeight::can_wrap(*linear.weight)) continue;
    const std::string full = "model.layers." + std::to_string(index) + "." + name;
    const auto original = originals_.find(full);
    auto fake = FakeQuantWeight::wrap(*linear.weight, {false, original == originals_.end() ? at::Tensor() : original->second});
    for (const TrainableTensor& t : fake->trainable()) (t.suffix.empty() ? weights : qparams).push_back(t.tensor);
    linear.weight = fake;
    ++wrapped;
  }
  if (wrapped == 0) {
    log_warning(strprintf("layer %lld: block-ap found no quantized linear layer to train", (long long)index));
    return;
  }
  layer.input_norm = layer.input_norm.detach().clone();
  layer.post_attention_norm = layer.post_attention_norm.detach().clone();
  weights.push_back(layer.input_norm);
  weights.push_back(layer.post_attention_norm);

  using torch::optim::AdamWOptions;
  std::vector<torch::optim::OptimizerParamGroup> groups;
  std::vector<double> base_lr;
  const auto add_group = [&](std::vector<at::Tensor>& tensors, double lr) {
    if (lr <= 0) return;
    for (at::Tensor& t : tensors) t.requires_grad_(true);
    groups.emplace_back(tensors, std::make_unique<AdamWOptions>(AdamWOptions(lr).weight_decay(options_.weight_decay)));
    base_lr.push_back(lr);
  };
  add_group(weights, options_.weight_lr);
  add_group(qparams, options_.quant_lr);
  torch::optim::AdamW optimizer(groups, AdamWOptions(options_.weight_lr));

  const int64_t samples = inputs.size(0), batch = std::min(options_.batch_size, samples);
  const int64_t per_epoch = (samples + batch - 1) / batch, total = per_epoch * options_.epochs;
  // The reconstruction loss of samples start .. start + n - 1.
  const auto batch_loss = [&](int64_t start, int64_t n) {
    const at::Tensor out = layer.forward(inputs.narrow(0, start, n), shell.config, shell.rope, 0);
    return at::mse_loss(out.to(at::kFloat), targets.narrow(0, start, n));
  };
  // ... over every sample, without training.
  const auto error = [&] {
    at::NoGradGuard no_grad;
    double sum = 0;
    for (int64_t start = 0; start < samples; start += batch) {
      const int64_t n = std::min(batch, samples - start);
      sum += batch_loss(start, n).item<double>() * double(n);
    }
    return sum / double(samples);
  };
  const double before = error();
  for (int64_t step = 0; step < total; ++step) {
    const int64_t start = (step % per_epoch) * batch, n = std::min(batch, samples - start);
    optimizer.zero_grad();
    at::Tensor loss;
    {
      const Bf16Autocast autocast(inputs.device(), options_.bf16);
      loss = batch_loss(start, n);
    }
    loss.backward();
    optimizer.step();
    // The schedulers step after each optimizer step, as the paper's code does.
    for (size_t g = 0; g < optimizer.param_groups().size(); ++g)
      static_cast<AdamWOptions&>(optimizer.param_groups()[g].options())
          .lr(cosine(base_lr[g], base_lr[g] / options_.min_lr_factor, step + 1, total));
    const double value = loss.item<double>();
    if (!std::isfinite(value))
      throw Error(strprintf("layer %lld: block-ap's reconstruction loss is %g at step %lld; lower weight_lr / quant_lr",
                            (long long)index, value, (long long)step + 1));
  }
  const double after = error();
  export_fake_quant(layer);
  layer.input_norm = layer.input_norm.detach();
  layer.post_attention_norm = layer.post_attention_norm.detach();
  originals_.clear();
  log_info(strprintf("layer %lld: block-ap %lld steps, reconstruction mse %.4g -> %.4g", (long long)index,
                     (long long)total, before, after));
}

}  // namespace llmpress
