#include "llmpress/cli/common.h"

#include <ATen/Parallel.h>
#include <stdlib.h>

#include <cstdio>
#include <filesystem>

#include "llmpress/core/error.h"

namespace llmpress::cli {

namespace fs = std::filesystem;

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
