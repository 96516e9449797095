// llmpress quantize: post-training quantization (RTN, GPTQ, AWQ) as a one-stage pipeline, to a
// llama.cpp GGUF (block types of a llama-quantize mix), a GPTQ checkpoint or a dense folder.
#include <filesystem>

#include "llmpress/cli/job.h"
#include "llmpress/core/error.h"
#include "llmpress/pipeline/method.h"
#include "llmpress/quant/type_mix.h"

namespace llmpress::cli {

namespace {

struct QuantizeCommand {
  JobFlags job;
  std::string method;  // default: gptq with calibration text, rtn without (as llama-quantize needs none)
  std::string format;  // default: from the output name and --type
  std::string type;    // a llama-quantize mix: GGUF output
  std::vector<std::string> tensor_types;
  MethodFlags options;
};

Recipe build_recipe(const QuantizeCommand& command) {
  Recipe recipe = recipe_from_flags(command.job);
  StageSpec stage;
  stage.method = !command.method.empty() ? command.method : command.job.calib_file.empty() ? "rtn" : "gptq";
  stage.options = command.options.given();
  recipe.output.format = command.format;
  recipe.output.type = command.type;
  recipe.output.tensor_types = command.tensor_types;
  const bool gguf = command.format == "gguf" || (command.format.empty() &&
                    (std::filesystem::path(command.job.output).extension() == ".gguf" || !command.type.empty()));
  if (gguf) {
    // The blocks the stage quantizes onto are the mix's; RTN uses the activations (imatrix) when it has them.
    if (stage.options.contains("bits") || stage.options.contains("group") || stage.options.contains("sym"))
      throw Error("--bits/--group/--sym describe an integer grid; GGUF output is quantized onto the block types of "
                  "--type (e.g. --type Q4_K_M): give one or the other");
    stage.options["type"] = command.type.empty() ? "Q4_K_M" : command.type;
    recipe.output.type = stage.options["type"];
    if (!command.tensor_types.empty()) stage.options["tensor_type"] = command.tensor_types;
    if (stage.method != "gptq" && stage.method != "awq-gptq" && !command.job.calib_file.empty())
      stage.options["imatrix"] = true;
  } else if (!command.tensor_types.empty()) {
    throw Error("--tensor-type needs GGUF output (-o NAME.gguf or --type MIX)");
  }
  recipe.stages.push_back(stage);
  return recipe;
}

}  // namespace

void register_quantize(CLI::App& app) {
  auto command = std::make_shared<QuantizeCommand>();
  CLI::App* sub = app.add_subcommand(
      "quantize", "post-training quantization (RTN, GPTQ, AWQ) to llama.cpp block types, a GPTQ or AWQ checkpoint or a grid");
  add_job_flags(*sub, command->job,
                "output: NAME.gguf (llama.cpp), or a folder (Hugging Face: dense fake-quantized, or --format gptq / awq)");
  sub->add_option("--method", command->method,
                  "rtn, gptq, awq (activation-aware scales, then rtn) or awq-gptq; default: gptq with --calib, "
                  "rtn without");
  sub->add_option("--format", command->format,
                  "gguf (llama.cpp blocks of --type), gptq (Hugging Face GPTQ checkpoint: qweight/qzeros/scales/g_idx, "
                  "2/3/4/8 bits), awq (AWQ GEMM checkpoint: qweight/qzeros/scales, 4 bits, no act-order) or dense "
                  "(Hugging Face folder of dequantized weights); default: gguf for a .gguf name or with --type, else "
                  "dense");
  sub->add_option("--type", command->type,
                  "llama-quantize mix for GGUF output (" + mix_list() +
                      "; default Q4_K_M); rtn with --calib weights the blocks by the activations (imatrix); IQ1_S, "
                      "IQ1_M, IQ2_XXS, IQ2_XS, IQ2_S, IQ2_M and IQ3_XXS need --calib");
  sub->add_option("--tensor-type", command->tensor_types, "GGUF: REGEX=TYPE per-tensor override (repeatable)");
  command->options.add(*sub, "quantize", {"type", "tensor_type", "imatrix"});
  sub->callback([command] { run_job(build_recipe(*command), command->job); });
}

}  // namespace llmpress::cli
