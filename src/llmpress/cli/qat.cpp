// llmpress qat: quantization-aware training onto exactly the format the output stores, as a two-stage
// recipe (--save-recipe writes it):
//   efficientqat  block-ap (each decoder layer: rtn or gptq, then its weights, scales and norms trained to
//                 reproduce the layer's outputs on --calib) -> qat learn=qparams (E2E-QP: only the scales,
//                 zero points and mins, end to end, by KD from the input model on -f TEXT)
//   llm-qat       rtn (or gptq) -> qat learn=all: every weight and quantization parameter by KD from the
//                 input model, on -f TEXT or data-free (--generate ROWS: the input model writes its own rows)
#include <filesystem>

#include "llmpress/cli/job.h"
#include "llmpress/core/error.h"

namespace llmpress::cli {

namespace {

struct QatCommand {
  JobFlags job;
  std::string method = "efficientqat";
  std::string format, type, init;
  std::vector<std::string> tensor_types;
  std::string bits, group, data, train_seqlen;
  bool sym = false;
  std::map<std::string, std::string> block_ap;  // block-ap option -> flag text, when given
  std::map<std::string, CLI::Option*> block_ap_flags;
  MethodFlags training;
  CLI::App* app = nullptr;
};

Recipe build_recipe(const QatCommand& c) {
  if (c.method != "efficientqat" && c.method != "llm-qat")
    throw Error("--method must be efficientqat or llm-qat, not '" + c.method + "'");
  Recipe recipe = recipe_from_flags(c.job);
  recipe.output.format = c.format;
  recipe.output.tensor_types = c.tensor_types;
  const bool efficient = c.method == "efficientqat";

  StageSpec quantize;
  const std::string init = !c.init.empty() ? c.init : efficient || c.job.calib_file.empty() ? "rtn" : "gptq";
  if (init != "rtn" && init != "gptq") throw Error("--init must be rtn or gptq, not '" + init + "'");
  quantize.method = efficient ? "block-ap" : init;
  if (efficient) quantize.options["init"] = init;
  const bool gguf = c.format == "gguf" || (c.format.empty() && (std::filesystem::path(c.job.output).extension() == ".gguf" || !c.type.empty()));
  if (gguf) {
    if (!c.bits.empty() || !c.group.empty() || c.sym)
      throw Error("--bits/--group/--sym describe an integer grid; GGUF output trains on the block types of --type: give one or the other");
    quantize.options["type"] = c.type.empty() ? "Q4_K_M" : c.type;
    recipe.output.type = quantize.options["type"];
    if (!c.tensor_types.empty()) quantize.options["tensor_type"] = c.tensor_types;
    if (init == "rtn" && !c.job.calib_file.empty()) quantize.options["imatrix"] = true;
  } else {
    if (!c.type.empty() || !c.tensor_types.empty())
      throw Error("--type / --tensor-type are llama.cpp block types: give an output NAME.gguf (or --format gguf)");
    if (!c.bits.empty()) quantize.options["bits"] = parse_flag_number("--bits", c.bits, true);
    if (!c.group.empty()) quantize.options["group"] = parse_flag_number("--group", c.group, true);
    if (c.sym) quantize.options["sym"] = true;
  }
  for (const auto& [name, flag] : c.block_ap_flags) {
    if (flag->count() == 0) continue;
    if (!efficient) throw Error(flag->get_name() + " belongs to --method efficientqat (block-ap)");
    quantize.options[name] = parse_flag_number(flag->get_name(), c.block_ap.at(name), name == "epochs" || name == "batch_size");
  }

  StageSpec qat;
  qat.method = "qat";
  qat.options = c.training.given();
  if (!qat.options.contains("learn")) qat.options["learn"] = efficient ? "qparams" : "all";
  if (!c.data.empty()) qat.options["data"] = c.data;
  if (!c.train_seqlen.empty()) qat.options["seqlen"] = parse_flag_number("--train-seqlen", c.train_seqlen, true);
  if (c.app->get_option("--seed")->count()) qat.options["seed"] = c.job.calib.seed;
  recipe.stages = {quantize, qat};
  return recipe;
}

}  // namespace

void register_qat(CLI::App& app) {
  auto c = std::make_shared<QatCommand>();
  CLI::App* sub = app.add_subcommand(
      "qat", "quantization-aware training (EfficientQAT, LLM-QAT) onto llama.cpp block types or an integer grid, "
             "exported exactly as trained");
  c->app = sub;
  add_job_flags(*sub, c->job, "output: NAME.gguf (llama.cpp blocks of --type) or a folder (--format gptq: a GPTQ checkpoint)");
  sub->add_option("--method", c->method,
                  "efficientqat (block-ap on --calib, then E2E-QP: only quantization parameters, by KD on -f) or llm-qat "
                  "(every weight and quantization parameter by KD, on -f or --generate)")->capture_default_str();
  sub->add_option("--format", c->format, "gguf or gptq (an integer grid as a GPTQ checkpoint) or dense; default from -o");
  sub->add_option("--type", c->type, "llama-quantize mix for GGUF output (Q2_K, Q3_K_M, Q4_K_M, Q4_0, ...; default Q4_K_M)");
  sub->add_option("--tensor-type", c->tensor_types, "GGUF: REGEX=TYPE per-tensor override (repeatable)");
  sub->add_option("--bits", c->bits, "integer grid: bits per weight, 2..8 (default 4)");
  sub->add_option("--group", c->group, "integer grid: input columns per group, -1 per channel (default 128)");
  sub->add_flag("--sym", c->sym, "integer grid: symmetric (zero point fixed)");
  sub->add_option("--init", c->init, "the post-training quantization training starts from: rtn or gptq (default: rtn for "
                                     "efficientqat, as the paper; gptq for llm-qat with --calib)");
  sub->add_option("-f,--file", c->data, "training text or .jsonl records for the qat stage (llm-qat: or --generate)");
  sub->add_option("--train-seqlen", c->train_seqlen, "tokens per training row (default 256)");
  const std::vector<std::tuple<std::string, std::string, std::string>> block_ap = {
      {"epochs", "--block-epochs", "block-ap: passes over the calibration samples per layer (default 2)"},
      {"batch_size", "--block-batch", "block-ap: calibration samples per step (default 2)"},
      {"weight_lr", "--block-weight-lr", "block-ap: learning rate of the weights and norms (default 2e-5; 0: frozen)"},
      {"quant_lr", "--block-quant-lr", "block-ap: learning rate of the quantization parameters, relative (default 1e-3)"}};
  for (const auto& [name, flag, help] : block_ap) c->block_ap_flags[name] = sub->add_option(flag, c->block_ap[name], help);
  c->training.add(*sub, "qat", {"data", "seqlen", "seed", "eval"});
  sub->footer("examples:\n"
              "  llmpress qat -m MODEL -o model-q2k.gguf --type Q2_K --calib calib.txt -f train.txt --steps 300\n"
              "  llmpress qat -m MODEL -o model-int2 --format gptq --bits 2 --group 64 --method llm-qat --generate 512 "
              "--steps 300 --lr 1e-4\n"
              "the qat stage's teacher is the input model (--teacher another); --save-recipe writes the recipe");
  sub->callback([c] { run_job(build_recipe(*c), c->job); });
}

}  // namespace llmpress::cli
