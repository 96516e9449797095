#include "llmpress/pipeline/pipeline.h"

#include <nlohmann/json.hpp>
#include <stdlib.h>

#include <chrono>
#include <filesystem>
#include <regex>

#include "llmpress/calib/engine.h"
#include "llmpress/core/error.h"
#include "llmpress/core/log.h"
#include "llmpress/data/calibration.h"
#include "llmpress/data/text.h"
#include "llmpress/distributed/communicator.h"
#include "llmpress/io/atomic_file.h"
#include "llmpress/io/checkpoint.h"
#include "llmpress/io/hf_config.h"
#include "llmpress/model/layer_file.h"
#include "llmpress/pipeline/method.h"
#include "llmpress/pipeline/routing.h"
#include "llmpress/pipeline/stage_output.h"
#include "llmpress/quant/type_mix.h"
#include "llmpress/tokenizer/tokenizer.h"

namespace llmpress {

namespace fs = std::filesystem;

namespace {

// What the input model already is (a GGUF holds ggml blocks, a GPTQ checkpoint an integer grid,
// a factorized folder low-rank layers, a pruned model zeros), read off its first layer.
ModelState input_state(const Checkpoint& checkpoint) {
  ModelState state;
  const DecoderLayer layer = Transformer::load_layer(checkpoint, 0, at::kCPU);
  for (const std::string& name : DecoderLayer::linear_names()) {
    const LinearWeight& w = *layer.linear(name).weight;
    const std::string kind = w.kind();
    state.pruned = state.pruned || w.pruning_mask().removed.defined();
    state.quantized = state.quantized || kind == "int" || kind == "ggml";
    state.ggml = state.ggml || kind == "ggml";
    state.factorized = state.factorized || kind == "lowrank";
  }
  return state;
}

// The format a folder output without one gets: factorized when there are low-rank layers to keep.
std::string default_format(const ModelState& state) { return state.factorized ? "factorized" : "hf"; }

void check_patterns(const StageSpec& stage, const ModelConfig& config) {
  for (const auto& [key, patterns] : {std::pair{"targets", &stage.targets}, std::pair{"ignore", &stage.ignore}}) {
    for (const std::string& pattern : *patterns) {
      std::regex regex;
      try {
        regex = compile_pattern(pattern, key);
      } catch (const Error& e) {
        throw Error(stage.where.describe() + ": " + e.what());
      }
      bool matched = false;
      for (int64_t i = 0; i < config.num_layers && !matched; ++i)
        for (const std::string& name : DecoderLayer::linear_names())
          matched = matched || std::regex_search("model.layers." + std::to_string(i) + "." + name, regex);
      if (!matched)
        throw Error(stage.where.describe() + ": " + key + " pattern '" + pattern + "' matches no linear layer (names "
                    "look like model.layers.0.self_attn.q_proj, model.layers.3.mlp.down_proj)");
    }
  }
}

ModelState check_stages(const Recipe& recipe, ModelState state, const ModelConfig& config) {
  for (size_t k = 0; k < recipe.stages.size(); ++k) {
    const StageSpec& stage = recipe.stages[k];
    const MethodSpec* method = nullptr;
    try {
      method = &find_method(stage.method);
    } catch (const Error& e) {
      throw Error(stage.where.describe() + ": stage " + std::to_string(k + 1) + ": " + e.what());
    }
    const StageOptions options(*method, stage);
    if (method->transform && (!stage.targets.empty() || !stage.ignore.empty()))
      throw Error(stage.where.describe() + ": " + method->name + " changes every layer alike; targets and ignore do "
                                           "not apply to it");
    check_patterns(stage, config);
    if (state.adapter)
      throw Error(stage.where.describe() + ": stage " + std::to_string(k + 1) + " (" + method->name +
                  ") follows a LoRA stage whose adapter is the output; give that stage merge: true (--merge) to "
                  "continue from the merged weights");
    method->check(options, state);
    if (method->needs_calibration(options) && recipe.calibration.file.empty())
      throw Error(stage.where.describe() + ": stage " + std::to_string(k + 1) + " (" + method->name +
                  ") needs calibration text: calibration: file (or --calib FILE, plain text or .jsonl)");
  }
  return state;
}

void check_output_holds(const OutputSpec& output, const ModelState& state, const Recipe& recipe) {
  const auto fail = [&](const std::string& problem) { return Error(output.where.describe() + ": " + problem); };
  if (output.format.rfind("sparse", 0) == 0 && (!state.pruned || state.factorized))
    throw fail("a compressed-tensors sparse folder stores pruned linear layers: prune first (magnitude, wanda, "
               "sparsegpt), or write hf");
  if (state.adapter) {
    if (output.format != "gguf" && output.format != "hf")
      throw fail("a LoRA adapter is written as a PEFT folder (-o DIR) or a llama.cpp adapter (-o NAME.gguf), not " +
                 output.format + "; or merge it into the model (merge: true, --merge)");
    if (output.type != "F32" || !output.tensor_types.empty())
      throw fail("a LoRA adapter is written in F32: drop the output type " + output.type +
                 ", or merge the adapter (merge: true, --merge) to write a quantized model");
    return;
  }
  // The sink rounds linears without importance unless a quantize stage already chose their blocks.
  if (output.format == "gguf" && !state.ggml && output.type != "BF16" &&
      mix_needs_importance(output.type, output.tensor_types))
    throw fail(output.type + " needs importance weights from calibration data (llama-quantize needs an imatrix "
               "for it): quantize with a calibrated stage (gptq, or rtn with imatrix) of type " + output.type);
  if (output.format != "gptq" && output.format != "awq") return;
  const std::string checkpoint = output.format == "awq" ? "an AWQ checkpoint" : "a GPTQ checkpoint";
  if (!state.quantized || state.ggml || state.factorized)
    throw fail(checkpoint + " stores every decoder linear on an integer grid: the last stage must quantize onto "
               "one (rtn, gptq or awq with bits/group, no type)");
  for (auto it = recipe.stages.rbegin(); it != recipe.stages.rend(); ++it) {
    if (find_method(it->method).family != "quantize") continue;
    if (!it->targets.empty() || !it->ignore.empty())
      throw fail(checkpoint + " holds no unquantized decoder linears; the quantization stage's targets/ignore "
                 "would leave some dense (write hf or gguf instead)");
    break;
  }
}

// A work folder of our own beside the output, removed at the end.
class TemporaryFolder {
 public:
  explicit TemporaryFolder(const std::string& output) {
    const fs::path parent = fs::absolute(output).parent_path();
    remove_stale_temporaries(parent.string(), ".llmpress-work-");  // left by killed jobs
    std::string pattern = (parent / temporary_pattern(".llmpress-work-")).string();
    if (!mkdtemp(pattern.data())) throw Error("cannot create a work folder in " + parent.string());
    path_ = pattern;
  }
  ~TemporaryFolder() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// Per-column sum of squares of the head's input (the final norm applied to the last layer's outputs).
std::vector<float> head_importance(const at::Tensor& norm, double eps, const at::Tensor& final_hidden) {
  const at::Tensor x = final_hidden.to(at::kFloat).reshape({-1, final_hidden.size(-1)});
  const at::Tensor normed = x * at::rsqrt(x.pow(2).mean(-1, true) + eps) * norm.to(x.device());
  const at::Tensor sums = normed.to(at::kDouble).pow(2).sum(0).to(at::kCPU, at::kFloat).contiguous();
  return std::vector<float>(sums.data_ptr<float>(), sums.data_ptr<float>() + sums.numel());
}

std::string stage_folder(const std::string& work, size_t k, const std::string& method) {
  return work + "/stage-" + std::to_string(k + 1) + "-" + method;
}

// A structured stage: the whole model in memory, rewritten, saved as layer files + config.json.
// Returns the new config; a finished earlier run of the same job is reused.
ModelConfig run_transform(const MethodSpec& method, const StageOptions& options, const StageContext& context,
                          const std::string& job, StageReport& report) {
  const std::string& dir = context.stage_dir;
  const std::string state_path = dir + "/state.json";
  if (context.resume && fs::exists(state_path)) {
    const nlohmann::json state = nlohmann::json::parse(read_text_file(state_path), nullptr, false);
    if (state.is_object() && state.contains("job") && state["job"] == job && state.contains("finished") &&
        state["finished"] == true) {
      log_info("resuming: stage " + method.name + " already finished in " + dir);
      const ModelConfig config = read_hf_config(dir + "/config.json");
      report.resumed_layers = config.num_layers;
      return config;
    }
  }
  fs::create_directories(dir);
  Transformer model = context.source.load(context.device);
  report.notes.push_back(method.transform(model, options, context));
  for (int64_t i = 0; i < model.config.num_layers; ++i) save_layer_file(engine_layer_file(dir, i), model.layers[size_t(i)]);
  if (method.trains) save_shell_file(shell_file_path(dir), model);
  write_file_atomic(dir + "/config.json", to_hf_config(model.config).dump(2) + "\n");
  write_file_atomic(state_path, nlohmann::json{{"job", job}, {"finished", true}}.dump(2) + "\n");
  return model.config;
}

}  // namespace

OutputSpec check_recipe(const Recipe& recipe, const ModelConfig& config) {
  if (recipe.model.empty()) throw Error(recipe.where.describe() + ": no model (-m / model: PATH)");
  const ModelState state = check_stages(recipe, ModelState{}, config);
  OutputSpec output = resolve_output(recipe.output, default_format(state));
  check_output_holds(output, state, recipe);
  return output;
}

PipelineReport run_pipeline(const Recipe& recipe, const RunOptions& options) {
  const auto start = std::chrono::steady_clock::now();
  if (recipe.model.empty()) throw Error(recipe.where.describe() + ": no model (-m / model: PATH)");
  OpenOptions open;
  open.tokenizer = recipe.tokenizer;
  const Checkpoint origin = open_checkpoint(recipe.model, open);
  const ModelState input = input_state(origin);
  const ModelState final_state = check_stages(recipe, input, origin.config);
  const OutputSpec output = resolve_output(recipe.output, default_format(final_state));
  check_output_holds(output, final_state, recipe);

  PipelineReport report;
  report.parameters_before = origin.config.parameter_count();
  at::Tensor tokens = at::zeros({0, 1}, at::kLong);
  bool calibrate = false;
  for (const StageSpec& stage : recipe.stages) {
    const MethodSpec& method = find_method(stage.method);
    calibrate = calibrate || method.needs_calibration(StageOptions(method, stage));
  }
  calibrate = calibrate || (options.measure_errors && !recipe.calibration.file.empty());
  if (!recipe.calibration.file.empty() && !calibrate)
    log_note("no stage uses calibration data; " + recipe.calibration.file + " is not read");
  if (calibrate) {
    const auto tokenizer = load_tokenizer(origin);
    const std::vector<int32_t> stream = tokenizer->encode(read_calibration_text(recipe.calibration.file));
    CalibrationOptions calib;
    calib.nsamples = recipe.calibration.nsamples;
    calib.seqlen = recipe.calibration.seqlen;
    calib.seed = recipe.calibration.seed;
    tokens = calibration_windows(stream, calib, origin.config.max_position_embeddings);
    report.calibration_tokens = int64_t(stream.size());
    report.calibration_samples = tokens.size(0);
    report.calibration_seqlen = tokens.size(1);
    log_info(strprintf("%s: %zu tokens; %lld samples of %lld tokens (seed %llu)", recipe.calibration.file.c_str(),
                       stream.size(), (long long)tokens.size(0), (long long)tokens.size(1),
                       (unsigned long long)calib.seed));
  }

  std::unique_ptr<TemporaryFolder> temporary;
  const bool writes = !options.group || options.group->writes();
  std::string work = options.work_dir;
  if (!writes && !work.empty()) work += "/rank-" + std::to_string(options.group->rank());
  if (work.empty()) {
    if (options.resume) throw Error("--resume needs the --work-dir of the job to continue");
    temporary = std::make_unique<TemporaryFolder>(output.path);  // one per rank
    work = temporary->path();
  }
  fs::create_directories(work);

  std::unique_ptr<LayerSource> source = std::make_unique<CheckpointSource>(origin);
  std::string shell_file;  // the embeddings, norm and head of the last training stage
  std::vector<std::string> engine_dirs;  // stage folders where the engine saved activations
  ModelConfig config = origin.config;
  at::Tensor final_hidden;
  for (size_t k = 0; k < recipe.stages.size(); ++k) {
    const StageSpec& stage = recipe.stages[k];
    const MethodSpec& method = find_method(stage.method);
    const StageOptions stage_options(method, stage);
    StageReport stage_report;
    stage_report.method = method.name;
    const std::string dir = stage_folder(work, k, method.name);
    const StageContext context{*source, config, origin, tokens, options.device, options.batch_samples,
                               options.progress, &stage_report.notes, dir, !options.work_dir.empty(), options.resume,
                               options.group};
    log_info(strprintf("stage %zu/%zu: %s", k + 1, recipe.stages.size(), method.name.c_str()));
    const auto stage_start = std::chrono::steady_clock::now();
    std::string identity;
    if (method.transform) {
      identity = source->identity() + "|" + method.name + " " + stage.options.dump() + "|" +
                 std::to_string(tokens.size(0)) + "x" + std::to_string(tokens.size(1)) + "|" +
                 std::to_string(tokens.sum().item<int64_t>());
      stage_report.description = method.name + " " + stage.options.dump();
      config = run_transform(method, stage_options, context, identity, stage_report);
      if (method.trains) shell_file = shell_file_path(dir);
      final_hidden = at::Tensor();
    } else {
      RoutingCompressor compressor(method.compressor(stage_options, context), stage.targets, stage.ignore);
      stage_report.description = compressor.describe();
      log_info("with " + compressor.describe());
      Transformer shell = source->load_shell(options.device);
      shell.lm_head = Linear{};  // the engine reads the embeddings only; the head is not held during the stage
      EngineOptions engine;
      engine.device = options.device;
      engine.batch_samples = options.batch_samples;
      engine.measure_errors = options.measure_errors && tokens.size(0) > 0;
      engine.work_dir = dir;
      engine_dirs.push_back(dir);
      engine.save_inputs = !options.work_dir.empty();
      engine.resume = options.resume;
      engine.progress = options.progress;
      engine.group = options.group;
      const EngineResult result = compress_sequential(*source, shell, tokens, compressor, engine);
      identity = result.job;
      stage_report.resumed_layers = result.resumed_layers;
      stage_report.linears = result.linears;
      if (!compressor.skipped().empty())
        stage_report.notes.push_back(strprintf("%zu linear layers left as they were (targets / ignore)",
                                               compressor.skipped().size()));
      final_hidden = result.final_hidden;
    }
    stage_report.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - stage_start).count();
    report.stages.push_back(stage_report);
    source = std::make_unique<StageOutput>(origin, config, dir, identity, shell_file);
  }

  if (writes) {  // rank 0 writes the output for the group
    SinkInput sink{*source, origin, output};
    Transformer trained_shell;
    if (!shell_file.empty()) {
      trained_shell = source->load_shell(at::kCPU);
      sink.shell = &trained_shell;
    }
    sink.keep_encoded = final_state.ggml && !recipe.stages.empty();
    sink.adapter = final_state.adapter;
    // llama.cpp's imatrix entry for output.weight (the head's inputs), when the blocks were calibrated.
    if (output.format == "gguf" && final_state.ggml && final_hidden.defined() && tokens.size(0) > 0)
      sink.head_importance = head_importance(sink.shell ? trained_shell.norm : origin.load("model.norm.weight"),
                                             origin.config.rms_norm_eps, final_hidden);
    final_hidden = at::Tensor();  // not held while the output is written
    Recipe provenance = recipe;
    provenance.output = output;
    sink.recipe_yaml = recipe_to_yaml(provenance);
    sink.recipe_json = recipe_to_json(provenance);
    report.output = write_model(sink);
  }
  if (!options.work_dir.empty())
    for (const std::string& dir : engine_dirs) remove_saved_activations(dir);
  report.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return report;
}

}  // namespace llmpress
