#include "llmpress/train/forward.h"

#include <ATen/autocast_mode.h>
#include <torch/csrc/autograd/custom_function.h>

namespace llmpress {

namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// One decoder layer whose activations are recomputed in the backward pass (PyTorch's reentrant
// torch.utils.checkpoint): the forward runs without recording a graph; the backward runs the layer
// again with one, back-propagates the incoming gradient through it (the layer's parameters receive
// their gradients there) and hands the input's gradient on.
struct CheckpointedLayer : public torch::autograd::Function<CheckpointedLayer> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& hidden, const Transformer* model, int64_t layer,
                            const PackedLayout* layout) {
    ctx->save_for_backward({hidden});
    // The model and layout outlive the backward pass (the trainer holds both until the step ends).
    ctx->saved_data["model"] = int64_t(reinterpret_cast<intptr_t>(model));
    ctx->saved_data["layer"] = layer;
    ctx->saved_data["layout"] = int64_t(reinterpret_cast<intptr_t>(layout));
    ctx->saved_data["bf16"] = Bf16Autocast::active();  // the recomputation runs in the same precision
    return model->layers[size_t(layer)].forward(hidden, model->config, model->rope, 0, nullptr, layout);
  }

  static variable_list backward(AutogradContext* ctx, variable_list grad_outputs) {
    const auto* model = reinterpret_cast<const Transformer*>(intptr_t(ctx->saved_data["model"].toInt()));
    const auto* layout = reinterpret_cast<const PackedLayout*>(intptr_t(ctx->saved_data["layout"].toInt()));
    const int64_t layer = ctx->saved_data["layer"].toInt();
    const at::Tensor input = ctx->get_saved_variables()[0].detach().requires_grad_(true);
    at::Tensor output;
    {
      at::AutoGradMode enable(true);
      const Bf16Autocast autocast(input.device(), ctx->saved_data["bf16"].toBool());
      output = model->layers[size_t(layer)].forward(input, model->config, model->rope, 0, nullptr, layout);
    }
    output.backward(grad_outputs[0]);
    return {input.grad(), at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

}  // namespace

Bf16Autocast::Bf16Autocast(const at::Device& device, bool enabled) : enabled_(enabled), cuda_(device.is_cuda()) {
  if (!enabled_) return;
  if (cuda_) {
    was_enabled_ = at::autocast::is_enabled();
    was_dtype_ = at::autocast::get_autocast_gpu_dtype();
    at::autocast::set_autocast_gpu_dtype(at::kBFloat16);
    at::autocast::set_enabled(true);
  } else {
    was_enabled_ = at::autocast::is_cpu_enabled();
    was_dtype_ = at::autocast::get_autocast_cpu_dtype();
    at::autocast::set_autocast_cpu_dtype(at::kBFloat16);
    at::autocast::set_cpu_enabled(true);
  }
  at::autocast::increment_nesting();
}

Bf16Autocast::~Bf16Autocast() {
  if (!enabled_) return;
  // The bfloat16 copies of the weights are cached while autocast is on; drop them at the outermost exit.
  if (at::autocast::decrement_nesting() == 0) at::autocast::clear_cache();
  if (cuda_) {
    at::autocast::set_enabled(was_enabled_);
    at::autocast::set_autocast_gpu_dtype(was_dtype_);
  } else {
    at::autocast::set_cpu_enabled(was_enabled_);
    at::autocast::set_autocast_cpu_dtype(was_dtype_);
  }
}

bool Bf16Autocast::active() {
  return (at::autocast::is_cpu_enabled() && at::autocast::get_autocast_cpu_dtype() == at::kBFloat16) ||
         (at::autocast::is_enabled() && at::autocast::get_autocast_gpu_dtype() == at::kBFloat16);
}

ForwardResult training_forward(const Transformer& model, const at::Tensor& tokens, const PackedLayout* layout,
                               const ForwardOptions& options) {
  const bool layout_used = layout && layout->defined();
  const PackedLayout* packed = layout_used ? layout : nullptr;
  ForwardResult result;
  at::Tensor hidden = model.embed(tokens.to(model.device()));
  // A checkpointed layer passes gradients on only when its input needs one (frozen embeddings).
  if (options.checkpoint_layers && at::GradMode::is_enabled() && !hidden.requires_grad())
    hidden = hidden.detach().requires_grad_(true);
  for (size_t i = 0; i < model.layers.size(); ++i) {
    hidden = options.checkpoint_layers && at::GradMode::is_enabled()
                 ? CheckpointedLayer::apply(hidden, &model, int64_t(i), packed)
                 : model.layers[i].forward(hidden, model.config, model.rope, 0, nullptr, packed);
    if (options.keep_hidden) result.hidden.push_back(hidden);
  }
  result.logits = model.head(hidden);
  return result;
}

}  // namespace llmpress
