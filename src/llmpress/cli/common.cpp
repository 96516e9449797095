#include "llmpress/cli/common.h"

#include <ATen/Parallel.h>
#include <stdlib.h>

#include <cstdio>
#include <filesystem>

#include "llmpress/core/error.h"

namespace llmpress::cli {

namespace fs = std::filesystem;

TokenizerFiles::~TokenizerFiles() {
  std::error_code ec;
  if (!staging.empty()) fs::remove_all(staging, ec);
}

void TokenizerFiles::add_as(const std::string& source_name, const std::string& name) {
  const fs::path source = source_name;
  if (source.filename() == name) {
    files.push_back(source.string());
    return;
  }
  if (staging.empty()) {
    std::string pattern = (fs::temp_directory_path() / "llmpress-tokenizer-XXXXXX").string();
    if (!mkdtemp(pattern.data())) throw Error("cannot create a temporary folder in " + fs::temp_directory_path().string());
    staging = pattern;
  }
  fs::copy_file(source, fs::path(staging) / name, fs::copy_options::overwrite_existing);
  files.push_back((fs::path(staging) / name).string());
}

void collect_tokenizer_files(const Checkpoint& checkpoint, TokenizerFiles& out) {
  if (checkpoint.tokenizer_file.empty()) {
    std::fprintf(stderr, "warning: %s has no tokenizer file; the output gets none (pass --tokenizer later)\n",
                 checkpoint.path.c_str());
    return;
  }
  fs::path file = checkpoint.tokenizer_file;
  if (file.extension() == ".bin") {
    const fs::path model = fs::path(file).replace_extension(".model");
    if (!fs::is_regular_file(model)) {
      std::fprintf(stderr, "warning: no SentencePiece model beside %s; the output gets no tokenizer\n",
                   file.string().c_str());
      return;
    }
    file = model;
  }
  out.add_as(file.string(), file.extension() == ".json" ? "tokenizer.json" : "tokenizer.model");
  for (const char* extra : {"tokenizer_config.json", "special_tokens_map.json", "generation_config.json"}) {
    const fs::path path = file.parent_path() / extra;
    if (checkpoint.format == CheckpointFormat::HuggingFace && fs::is_regular_file(path)) out.add_as(path.string(), extra);
  }
}

void add_model_options(CLI::App& command, ModelOptions& options) {
  command.add_option("-m,--model", options.model,
                     "model: Hugging Face directory (config.json + *.safetensors), .gguf file, or llama2.c .bin")
      ->required();
  command.add_option("--tokenizer", options.tokenizer,
                     "tokenizer file (tokenizer.model, tokenizer.json or llama2.c tokenizer.bin); "
                     "default: the one beside the model or inside the GGUF");
  command.add_option("-t,--threads", options.threads, "CPU threads (default: all cores)");
  command.add_option("--device", options.device, "cpu, or cuda / cuda:N with a CUDA build of libtorch")
      ->capture_default_str();
}

at::Device parse_device(const std::string& name) {
  try {
    at::Device device(name);
    if (device.is_cuda() && !at::hasCUDA())
      throw Error("--device " + name + ": this libtorch has no CUDA support; use --device cpu");
    return device;
  } catch (const c10::Error&) {
    throw Error("--device: unknown device '" + name + "' (use cpu, cuda or cuda:N)");
  }
}

Checkpoint open_model(const ModelOptions& options) {
  if (options.threads > 0) at::set_num_threads(options.threads);
  OpenOptions open;
  open.tokenizer = options.tokenizer;
  return open_checkpoint(options.model, open);  // checks the tensors against the config
}

}  // namespace llmpress::cli
