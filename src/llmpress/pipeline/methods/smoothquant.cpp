// SmoothQuant as a stage (quant/smoothquant.h): one calibration pass for the activation maxima, then the
// norms and the weights that read them are rescaled. The weights stay dense: a later stage quantizes them
// (smoothquant -> rtn / gptq), and activations are simulated at 8 bits by perplexity --act-bits.
#include "llmpress/core/log.h"
#include "llmpress/pipeline/method.h"
#include "llmpress/quant/smoothquant.h"

namespace llmpress {

namespace {

void check_smoothquant(const StageOptions& o, ModelState& state) {
  if (state.quantized || state.pruned || state.factorized)
    throw o.error("smoothquant rescales dense weights: put it before pruning, quantization and low-rank stages");
  if (!(o.number("alpha") >= 0 && o.number("alpha") <= 1)) throw o.error("alpha", "alpha must be in [0, 1]");
}

std::string transform(Transformer& model, const StageOptions& o, const StageContext& context) {
  SmoothQuantOptions options;
  options.alpha = o.number("alpha");
  options.batch_samples = context.batch_samples;
  options.progress = context.progress;
  const SmoothQuantResult r = smooth_quant(model, context.calibration, options);
  return strprintf("smoothed the inputs of q/k/v and gate/up (alpha %.2f): largest channel max / median %.1f -> %.1f",
                   options.alpha, r.spread_before, r.spread_after);
}

MethodSpec smoothquant_method() {
  MethodSpec m;
  m.name = "smoothquant";
  m.family = "quantize";
  m.summary = "SmoothQuant: migrate activation outliers into the weights (norms folded), before 8-bit activations";
  m.options = {{"alpha", OptionType::Number, 0.5, "smoothquant: migration strength (0: none, 1: all onto the weights)"}};
  m.needs_calibration = [](const StageOptions&) { return true; };
  m.check = check_smoothquant;
  m.transform = transform;
  return m;
}

const MethodRegistration smoothquant_stage(smoothquant_method());

}  // namespace

}  // namespace llmpress
