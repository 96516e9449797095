// llmpress convert: rewrite a model in another format or element type (no compression method).
#include <cctype>
#include <map>
#include <cstdio>
#include <filesystem>

#include "llmpress/cli/common.h"
#include "llmpress/core/error.h"
#include "llmpress/export/ggml_quantize.h"
#include "llmpress/export/gguf_writer.h"
#include "llmpress/export/llama2c_writer.h"
#include "llmpress/export/safetensors_writer.h"
#include "llmpress/quant/type_mix.h"

namespace llmpress::cli {

namespace {

struct ConvertCommand {
  ModelOptions model;
  std::string output;
  std::string format;  // gguf, hf, llama2c; default from the output name
  std::string type = "F32";
  std::vector<std::string> tensor_types;  // REGEX=TYPE overrides on GGUF tensor names
};

// True when `name` is one of llama-quantize's mixes (Q4_K_M, Q8_0, ...), compared case-insensitively.
bool is_mix(const std::string& name) {
  std::string upper = name;
  for (char& c : upper) c = char(std::toupper(static_cast<unsigned char>(c)));
  for (const std::string& mix : quant_mix_names())
    if (mix == upper) return true;
  return false;
}

std::string format_for(const ConvertCommand& command) {
  if (!command.format.empty()) return command.format;
  const std::string ext = std::filesystem::path(command.output).extension().string();
  if (ext == ".gguf") return "gguf";
  if (ext == ".bin") return "llama2c";
  return "hf";
}

// Tokenizer files to copy into a Hugging Face folder: the model's own, and its tokenizer_config.json.
std::vector<std::string> tokenizer_files_of(const Checkpoint& checkpoint) {
  std::vector<std::string> files;
  if (checkpoint.tokenizer_file.empty()) return files;
  files.push_back(checkpoint.tokenizer_file);
  const auto config = std::filesystem::path(checkpoint.tokenizer_file).parent_path() / "tokenizer_config.json";
  if (std::filesystem::exists(config)) files.push_back(config.string());
  return files;
}

void run(const ConvertCommand& command) {
  const Checkpoint checkpoint = open_model(command.model);
  const std::string format = format_for(command);
  // A llama-quantize mix chooses per-tensor types as llama-quantize does; other names are one type for all.
  const bool mix = format == "gguf" && is_mix(command.type);
  const TensorType type = mix ? quant_mix(command.type).default_type : ggml_type_from_name(command.type);
  if (!command.tensor_types.empty() && !mix)
    throw Error("--tensor-type needs a GGUF output and a mix as --type (e.g. --type Q4_K_M)");
  if (mix && mix_needs_importance(command.type, command.tensor_types))
    throw Error(command.type + " needs importance weights from calibration data, which convert does not use: "
                "llmpress quantize -m MODEL -o OUT.gguf --type " + command.type + " --calib TEXT");

  std::vector<NamedTensor> tensors;
  for (const auto& [name, raw] : checkpoint.tensors) tensors.push_back({name, checkpoint.load(name)});

  if (format == "gguf") {
    const Vocab vocab = load_tokenizer(checkpoint)->to_vocab();
    const auto choices = mix ? write_gguf_model_mix(command.output, checkpoint.config, tensors, vocab, command.type,
                                                    command.tensor_types)
                             : write_gguf_model(command.output, checkpoint.config, tensors, vocab, type);
    // One line per kind of fallback, not one per tensor.
    std::map<std::string, int> notes;
    for (const GgufTensorChoice& choice : choices)
      if (!choice.note.empty() && choice.gguf_name != "rope_freqs.weight") notes[choice.note]++;
    for (const auto& [note, count] : notes) std::fprintf(stderr, "note: %d tensor(s): %s\n", count, note.c_str());
  } else if (format == "hf") {
    HfCheckpointOptions options;
    if (type == TensorType::F16) options.dtype = at::kHalf;
    else if (type == TensorType::BF16) options.dtype = at::kBFloat16;
    else if (type == TensorType::F32) options.dtype = at::kFloat;
    else throw Error("--type " + command.type + ": Hugging Face safetensors hold F32, F16 or BF16");
    write_hf_checkpoint(command.output, checkpoint.config, tensors, tokenizer_files_of(checkpoint), options);
  } else if (format == "llama2c") {
    if (type != TensorType::F32) throw Error("--type " + command.type + ": llama2.c checkpoints are F32 only");
    // run.c needs the tokenizer beside the model; never overwrite a different one already there.
    const auto tokenizer_path = std::filesystem::path(command.output).parent_path() / "tokenizer.bin";
    if (std::filesystem::exists(tokenizer_path) && tokenizer_path != std::filesystem::path(checkpoint.tokenizer_file))
      throw Error(tokenizer_path.string() + " already exists; write the llama2.c model into another folder");
    write_llama2c(command.output, checkpoint.config, tensors);
    write_llama2c_tokenizer(tokenizer_path.string(), load_tokenizer(checkpoint)->to_vocab());
  } else {
    throw Error("--format " + format + ": use gguf, hf or llama2c");
  }
  std::printf("wrote %s (%s, %s)\n", command.output.c_str(), format.c_str(), command.type.c_str());
}

}  // namespace

void register_convert(CLI::App& app) {
  auto command = std::make_shared<ConvertCommand>();
  CLI::App* sub = app.add_subcommand("convert", "write a model in another format or element type");
  add_model_options(*sub, command->model);
  sub->add_option("-o,--output", command->output,
                  "output: FILE.gguf, FILE.bin (llama2.c) or a folder (Hugging Face safetensors)")
      ->required();
  sub->add_option("--format", command->format, "gguf, hf or llama2c (default: from the output name)");
  sub->add_option("--type", command->type,
                  "element type: F32, F16, BF16; for GGUF also a llama-quantize mix (" + mix_list() +
                      ": per-tensor types chosen as llama-quantize does, round-to-nearest) or one block type for "
                      "every weight (Q3_K, Q4_K, Q5_K)")
      ->capture_default_str();
  sub->add_option("--tensor-type", command->tensor_types,
                  "REGEX=TYPE: store GGUF tensors whose name matches REGEX as TYPE (with a mix; repeatable)");
  sub->callback([command] { run(*command); });
}

}  // namespace llmpress::cli
