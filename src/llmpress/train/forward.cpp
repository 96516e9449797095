#include "llmpress/train/forward.h"

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
      output = model->layers[size_t(layer)].forward(input, model->config, model->rope, 0, nullptr, layout);
    }
    output.backward(grad_outputs[0]);
    return {input.grad(), at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

}  // namespace

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
