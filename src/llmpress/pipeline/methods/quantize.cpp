// Post-training quantization methods: rtn, gptq, awq, awq-gptq, and block-ap (rtn or gptq, then
// EfficientQAT's per-layer training). Onto an integer grid (bits, group, sym) or, with `type`, onto
// the llama.cpp block types of a llama-quantize mix.
#include "llmpress/core/error.h"
#include "llmpress/export/gguf_writer.h"
#include "llmpress/io/checkpoint.h"
#include "llmpress/lowrank/low_rank_weight.h"
#include "llmpress/pipeline/method.h"
#include "llmpress/quant/awq.h"
#include "llmpress/quant/block_ap.h"
#include "llmpress/quant/ggml_rtn.h"
#include "llmpress/quant/ggml_weight.h"
#include "llmpress/quant/gptq.h"
#include "llmpress/quant/gptq_ggml.h"
#include "llmpress/quant/rtn.h"
#include "llmpress/quant/type_mix.h"

namespace llmpress {

namespace {

std::vector<OptionSpec> grid_options() {
  return {{"bits", OptionType::Integer, 4, "bits per weight of the integer grid, 2..8"},
          {"group", OptionType::Integer, 128, "input columns per group of the integer grid; -1: per output channel"},
          {"sym", OptionType::Boolean, false, "symmetric integer grid (zero point fixed at 2^(bits-1))"},
          {"type", OptionType::String, nullptr,
           "quantize onto llama.cpp block types instead: a llama-quantize mix (Q2_K, Q2_K_S, Q3_K_S/M/L, Q4_K_S/M, "
           "Q5_K_S/M, Q6_K, IQ1_S, IQ1_M, IQ2_XXS, IQ2_XS, IQ2_S, IQ2_M, IQ3_XXS, IQ3_XS, IQ3_S, IQ3_M, IQ4_NL, IQ4_XS, "
           "TQ1_0, TQ2_0, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0)"},
          {"tensor_type", OptionType::StringList, nullptr, "with type: REGEX=TYPE per-tensor overrides (GGUF names)"}};
}

std::vector<OptionSpec> gptq_options() {
  std::vector<OptionSpec> options = grid_options();
  options.push_back({"act_order", OptionType::Boolean, false, "columns in order of decreasing Hessian diagonal"});
  options.push_back({"static_groups", OptionType::Boolean, false, "fit every group's grid before quantizing"});
  options.push_back({"damp", OptionType::Number, 0.01, "dampening, fraction of the mean Hessian diagonal"});
  options.push_back({"block", OptionType::Integer, 128, "columns per lazy update block"});
  return options;
}

bool onto_ggml(const StageOptions& o) { return !o.text("type").empty(); }

// Whether ggml blocks are fitted with calibration statistics (llama-quantize's has_imatrix): always
// under GPTQ (the Hessian diagonal), with the imatrix option when the blocks are rounded to nearest.
bool rounds_with_importance(const StageOptions& o) {
  const std::string& m = o.method();
  if (m == "rtn" || m == "awq" || (m == "block-ap" && o.text("init") == "rtn")) return o.flag("imatrix");
  return true;
}

IntGridSpec grid_of(const StageOptions& o) {
  IntGridSpec spec;
  spec.bits = int(o.integer("bits"));
  spec.group_size = o.integer("group");
  spec.symmetric = o.flag("sym");
  try {
    spec.check();
  } catch (const Error& e) {
    throw o.error("bits", e.what());
  }
  return spec;
}

GptqOptions gptq_of(const StageOptions& o) {
  GptqOptions g;
  g.grid = grid_of(o);
  g.act_order = o.flag("act_order");
  g.static_groups = o.flag("static_groups");
  g.percdamp = o.number("damp");
  g.block_size = o.integer("block");
  if (!(g.percdamp >= 0)) throw o.error("damp", "the dampening must be >= 0");
  if (g.block_size < 1) throw o.error("block", "the block size must be positive");
  return g;
}

// Per-linear GGUF types of a mix (with its fallbacks and overrides), by Hugging Face linear name
// without ".weight"; the GGUF sink reports the fallback notes when it writes the file.
std::map<std::string, TensorType> linear_types(const ModelConfig& config, const std::string& mix,
                                               const std::vector<std::string>& overrides, bool calibrated) {
  std::vector<TensorShape> shapes;
  std::map<std::string, std::string> hf_of;
  for (const auto& [hf_name, shape] : expected_tensor_shapes(config)) {
    const std::string name = gguf_tensor_name(hf_name);
    if (name.empty()) continue;
    shapes.push_back({name, shape});
    hf_of[name] = hf_name;
  }
  std::map<std::string, TensorType> types;
  const std::string suffix = ".weight";
  for (const TensorTypeChoice& c : choose_tensor_types(config, shapes, mix, overrides, calibrated)) {
    const std::string& hf = hf_of[c.name];
    if (hf.rfind("model.layers.", 0) == 0 && hf.find("_proj.weight") != std::string::npos)
      types[hf.substr(0, hf.size() - suffix.size())] = c.type;
  }
  return types;
}

void check_quantize(const StageOptions& o, ModelState& state) {
  if (onto_ggml(o)) {
    try {
      quant_mix(o.text("type"));
    } catch (const Error& e) {
      throw o.error("type", e.what());
    }
    if (state.factorized)
      throw o.error("type", "llama.cpp block types cannot hold factorized layers (the factors' rows are the rank "
                            "wide); quantize the factors onto an integer grid (bits/group) instead");
    if (o.given("bits") || o.given("group") || o.given("sym"))
      throw o.error("bits", "bits/group/sym describe an integer grid; with type " + o.text("type") +
                                " the grid is the llama.cpp block type: give one or the other");
    if (mix_needs_importance(o.text("type"), o.list("tensor_type"))) {
      if (o.method().rfind("awq", 0) == 0)
        throw o.error("type", "awq's scale search rounds without importance weights, which " + o.text("type") +
                                  " blocks need; use gptq (or rtn with imatrix)");
      if (!rounds_with_importance(o))
        throw o.error("type", o.text("type") + " needs importance weights from calibration data (llama-quantize "
                              "needs an imatrix for it): give calibration text (--calib; in a recipe, imatrix: true "
                              "for rtn) or use gptq");
    }
    state.ggml = true;
    state.ggml_mix = o.text("type");
  } else {
    if (!o.list("tensor_type").empty()) throw o.error("tensor_type", "tensor_type needs type (a GGUF mix)");
    grid_of(o);
    state.ggml = false;
    state.ggml_mix.clear();
  }
  if (o.method().rfind("awq", 0) == 0 && state.factorized)
    throw o.error("type", "awq scales the inputs of whole layers and cannot follow a low-rank stage; use gptq or rtn");
  state.quantized = true;
}

// Quantizes low-rank layers factor by factor: V on the layer's inputs, then U on V's outputs, whose
// Hessian is V' H V'^T with V' the quantized V (so U's rounding sees V's error, as GPTQ's
// sequential order would). Other weights go to the inner compressor as they are.
class FactorwiseQuantizer : public Compressor {
 public:
  explicit FactorwiseQuantizer(std::unique_ptr<Compressor> inner) : inner_(std::move(inner)) {}
  std::string describe() const override { return inner_->describe(); }
  StatsRequest needs() const override { return inner_->needs(); }
  bool prepares_layers() const override { return inner_->prepares_layers(); }
  void prepare_layer(int64_t index, DecoderLayer& layer, const ModelConfig& config,
                     const std::vector<InputStats>& group_stats) override {
    inner_->prepare_layer(index, layer, config, group_stats);
  }
  std::shared_ptr<LinearWeight> compress(const std::string& name, const Linear& linear,
                                         const InputStats& stats) override {
    const auto* low = dynamic_cast<const LowRankWeight*>(linear.weight.get());
    if (!low) return inner_->compress(name, linear, stats);
    Linear v_linear{low->v(), {}};
    std::shared_ptr<LinearWeight> v = inner_->compress(name + ".v", v_linear, stats);
    InputStats u_stats;
    u_stats.tokens = stats.tokens;
    if (stats.hessian.defined()) {
      const at::Tensor vd = v->dense().to(stats.hessian.device(), at::kDouble);
      u_stats.hessian = at::matmul(at::matmul(vd, stats.hessian), vd.t());
    }
    Linear u_linear{low->u(), {}};
    std::shared_ptr<LinearWeight> u = inner_->compress(name + ".u", u_linear, u_stats);
    return std::make_shared<LowRankWeight>(u, v);
  }

 private:
  std::unique_ptr<Compressor> inner_;
};

std::unique_ptr<Compressor> make_quantizer(const StageOptions& o, const StageContext& context, bool gptq, bool awq) {
  std::unique_ptr<Compressor> inner;
  FakeQuantizer fake_quantize;
  if (onto_ggml(o)) {
    const auto types = linear_types(context.config, o.text("type"), o.list("tensor_type"), rounds_with_importance(o));
    if (gptq) inner = std::make_unique<GgmlGptqCompressor>(types, gptq_of(o));
    else inner = std::make_unique<GgmlRtnCompressor>(types, o.flag("imatrix"));
    fake_quantize = [types](const std::string& name, const at::Tensor& w) {
      return GgmlWeight::encode(w, types.at(name))->dense();
    };
  } else {
    const IntGridSpec grid = grid_of(o);
    if (gptq) inner = std::make_unique<GptqCompressor>(gptq_of(o));
    else inner = std::make_unique<RtnCompressor>(grid);
    fake_quantize = [grid](const std::string&, const at::Tensor& w) { return rtn_quantize(w, grid)->dense(); };
  }
  if (awq) {
    AwqOptions options;
    options.clip = o.flag("clip");
    // Clipping groups: the integer grid's groups (per channel: the whole row); ggml: the smallest block.
    options.clip_group = onto_ggml(o) ? 32 : grid_of(o).group_size;
    auto awq_compressor = std::make_unique<AwqCompressor>(std::move(inner), fake_quantize, options);
    awq_compressor->report_clipping_to(context.notes);
    inner = std::move(awq_compressor);
  }
  return std::make_unique<FactorwiseQuantizer>(std::move(inner));
}

MethodSpec quantize_method(const std::string& name, const std::string& summary, bool gptq, bool awq) {
  MethodSpec m;
  m.name = name;
  m.family = "quantize";
  m.summary = summary;
  m.options = gptq ? gptq_options() : grid_options();
  if (!gptq)
    m.options.push_back({"imatrix", OptionType::Boolean, false,
                         "with type: weight each block by the calibration activations (llama.cpp's imatrix)"});
  if (awq)
    m.options.push_back({"clip", OptionType::Boolean, true,
                         "AWQ's weight clipping after the scales: per row and group, clamp to the fraction "
                         "(1, 0.95, ..., 0.55) of max|w| whose quantization best keeps the outputs (not q/k_proj); on by "
                         "default, --clip=false (clip: false) for the scales alone"});
  m.needs_calibration = [gptq, awq](const StageOptions& o) {
    return gptq || awq || (onto_ggml(o) && o.flag("imatrix"));
  };
  m.check = check_quantize;
  m.compressor = [gptq, awq](const StageOptions& o, const StageContext& context) {
    return make_quantizer(o, context, gptq, awq);
  };
  return m;
}

BlockApOptions block_ap_of(const StageOptions& o) {
  BlockApOptions b;
  b.epochs = o.integer("epochs");
  b.batch_size = o.integer("batch_size");
  b.weight_lr = o.number("weight_lr");
  b.quant_lr = o.number("quant_lr");
  b.min_lr_factor = o.number("min_lr_factor");
  b.weight_decay = o.number("weight_decay");
  b.bf16 = o.flag("bf16");
  b.latent_from_original = o.text("init") == "rtn";
  return b;
}

MethodSpec block_ap_method() {
  MethodSpec m;
  m.name = "block-ap";
  m.family = "quantize";
  m.summary = "EfficientQAT Block-AP: rtn (or gptq), then each layer's weights, scales and norms trained to "
              "reproduce the layer's outputs";
  m.options = gptq_options();
  const std::vector<OptionSpec> own = {
      {"init", OptionType::String, "rtn", "the quantization each layer starts from: rtn (the paper's) or gptq"},
      {"imatrix", OptionType::Boolean, false, "init rtn with type: weight each block by the activations (imatrix)"},
      {"epochs", OptionType::Integer, 2, "passes over the calibration samples per layer"},
      {"batch_size", OptionType::Integer, 2, "calibration samples per step"},
      {"weight_lr", OptionType::Number, 2e-5, "learning rate of the weights and norms (0: frozen)"},
      {"quant_lr", OptionType::Number, 1e-3, "learning rate of the scales, zero points and mins, relative to their start (0: frozen)"},
      {"min_lr_factor", OptionType::Number, 20.0, "the cosine schedules end at lr / min_lr_factor"},
      {"weight_decay", OptionType::Number, 0.0, "AdamW's decoupled weight decay"},
      {"bf16", OptionType::Boolean, false, "matrix products in bfloat16 (autocast)"}};
  m.options.insert(m.options.end(), own.begin(), own.end());
  m.needs_calibration = [](const StageOptions&) { return true; };
  m.check = [](const StageOptions& o, ModelState& state) {
    if (o.text("init") != "rtn" && o.text("init") != "gptq") throw o.error("init", "init must be rtn or gptq");
    try {
      block_ap_of(o).check();
    } catch (const Error& e) {
      throw o.error(e.what());
    }
    check_quantize(o, state);
  };
  m.compressor = [](const StageOptions& o, const StageContext& context) -> std::unique_ptr<Compressor> {
    return std::make_unique<BlockApCompressor>(make_quantizer(o, context, o.text("init") == "gptq", false),
                                               block_ap_of(o));
  };
  return m;
}

const MethodRegistration rtn(quantize_method("rtn", "round to nearest (no calibration; imatrix-weighted with type)",
                                             false, false));
const MethodRegistration gptq(quantize_method("gptq", "GPTQ: rounding errors spread through the inverse Hessian",
                                              true, false));
const MethodRegistration awq(quantize_method("awq", "AWQ: activation-aware channel scales, then rtn", false, true));
const MethodRegistration awq_gptq(quantize_method("awq-gptq", "AWQ channel scales, then GPTQ", true, true));
const MethodRegistration block_ap(block_ap_method());

}  // namespace

}  // namespace llmpress
