#include "llmpress/quant/smoothquant.h"

#include <algorithm>
#include <cmath>

#include "llmpress/core/error.h"
#include "llmpress/core/progress.h"
#include "llmpress/model/observed_weight.h"

namespace llmpress {

namespace {

// `linear` now also keeps the per-channel max |x| of its inputs in the tensor it returns (filled in place).
std::shared_ptr<at::Tensor> observe_absmax(Linear& linear) {
  auto absmax = std::make_shared<at::Tensor>();
  linear.weight = std::make_shared<ObservedWeight>(linear.weight, [absmax](const at::Tensor& x) {
    const at::Tensor m = x.abs().to(at::kFloat).reshape({-1, x.size(-1)}).amax(0);
    *absmax = absmax->defined() ? at::maximum(*absmax, m) : m;
  });
  return absmax;
}

double spread(const at::Tensor& absmax) {
  return (absmax.max() / absmax.median().clamp_min(1e-12)).item<double>();
}

// The readers' column maxima, the smoothing factors, and the folding. Returns the input's spread after.
double smooth(at::Tensor& norm, std::vector<Linear*> readers, const at::Tensor& x_absmax, double alpha) {
  at::Tensor w_absmax;
  for (Linear* r : readers) {
    const auto* dense = dynamic_cast<const DenseWeight*>(r->weight.get());
    if (!dense) throw Error("smoothquant needs dense weights (a " + r->weight->kind() + " layer): run it before quantization");
    const at::Tensor m = dense->dense().detach().abs().to(at::kFloat).amax(0);
    w_absmax = w_absmax.defined() ? at::maximum(w_absmax, m) : m;
  }
  const at::Tensor x = x_absmax.to(w_absmax.device());
  // SmoothQuant's clamp: no channel is scaled by a factor from a zero maximum.
  const at::Tensor s = (x.pow(alpha) / w_absmax.pow(1 - alpha)).clamp_min(1e-5);
  const at::Tensor safe = at::where((x > 0) & (w_absmax > 0), s, at::ones_like(s));
  norm = (norm / safe.to(norm.scalar_type())).detach();
  for (Linear* r : readers) {
    const at::Tensor w = r->weight->dense().detach();
    r->weight = std::make_shared<DenseWeight>((w * safe.to(w.scalar_type()).unsqueeze(0)).contiguous());
  }
  return spread(x / safe);
}

}  // namespace

std::vector<ChannelAbsmax> input_channel_absmax(const Transformer& model, const at::Tensor& tokens,
                                                int64_t batch_samples, bool progress) {
  if (tokens.size(0) == 0) throw Error("smoothquant needs calibration text (--calib)");
  Transformer observed_model = model;  // shares tensors; only the linear slots are replaced
  std::vector<std::pair<std::shared_ptr<at::Tensor>, std::shared_ptr<at::Tensor>>> maxima;
  for (DecoderLayer& layer : observed_model.layers)
    maxima.push_back({observe_absmax(layer.q_proj), observe_absmax(layer.gate_proj)});
  at::NoGradGuard no_grad;
  Progress bar("smoothquant: activation maxima", tokens.size(0), "rows", progress);
  for (int64_t i = 0; i < tokens.size(0); i += batch_samples) {
    const at::Tensor batch = tokens.narrow(0, i, std::min(batch_samples, tokens.size(0) - i)).to(model.device());
    // Only the layers are needed; the head is skipped.
    at::Tensor hidden = observed_model.embed(batch);
    for (const DecoderLayer& layer : observed_model.layers)
      hidden = layer.forward(hidden, observed_model.config, observed_model.rope, 0);
    bar.update(i + batch.size(0));
  }
  bar.finish();
  std::vector<ChannelAbsmax> out;
  for (const auto& [attention, mlp] : maxima) out.push_back({*attention, *mlp});
  return out;
}

SmoothQuantResult smooth_quant(Transformer& model, const at::Tensor& tokens, const SmoothQuantOptions& options) {
  if (!(options.alpha >= 0 && options.alpha <= 1)) throw Error("smoothquant's alpha must be in [0, 1]");
  const std::vector<ChannelAbsmax> absmax = input_channel_absmax(model, tokens, options.batch_samples, options.progress);
  SmoothQuantResult result;
  for (size_t i = 0; i < model.layers.size(); ++i) {
    DecoderLayer& layer = model.layers[i];
    result.spread_before = std::max({result.spread_before, spread(absmax[i].attention), spread(absmax[i].mlp)});
    const double attention =
        smooth(layer.input_norm, {&layer.q_proj, &layer.k_proj, &layer.v_proj}, absmax[i].attention, options.alpha);
    const double mlp = smooth(layer.post_attention_norm, {&layer.gate_proj, &layer.up_proj}, absmax[i].mlp, options.alpha);
    result.spread_after = std::max({result.spread_after, attention, mlp});
  }
  return result;
}

}  // namespace llmpress
