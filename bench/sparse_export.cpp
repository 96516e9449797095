// Rewrites a pruned Hugging Face folder (dense safetensors with zeros in place, as `llmpress prune`
// writes it) as a compressed-tensors sparse checkpoint, reads it back, checks every tensor against
// the dense folder and prints both sizes on disk. Until `prune` writes the format itself.
#include <CLI/CLI.hpp>

#include <cstdio>
#include <filesystem>

#include "llmpress/core/error.h"
#include "llmpress/export/sparse_checkpoint_writer.h"
#include "llmpress/io/checkpoint.h"

namespace fs = std::filesystem;

uint64_t folder_bytes(const std::string& dir) {
  uint64_t total = 0;
  for (const auto& entry : fs::directory_iterator(dir))
    if (entry.is_regular_file()) total += entry.file_size();
  return total;
}

int main(int argc, char** argv) {
  CLI::App app{"write a pruned Hugging Face folder as a compressed-tensors sparse checkpoint"};
  std::string input, output, format = "sparse-bitmask", type;
  app.add_option("-m,--model", input, "pruned Hugging Face folder")->required();
  app.add_option("-o,--output", output, "output folder")->required();
  app.add_option("--format", format, "sparse-bitmask or sparse-24-bitmask");
  app.add_option("--type", type, "F32, F16 or BF16 (default: the input's dtype)");
  CLI11_PARSE(app, argc, argv);
  try {
    const llmpress::Checkpoint checkpoint = llmpress::open_checkpoint(input);
    std::vector<llmpress::NamedTensor> tensors;
    llmpress::TensorType stored = llmpress::TensorType::F32;
    for (const auto& [name, raw] : checkpoint.tensors) {
      tensors.push_back({name, checkpoint.load(name)});
      stored = raw.type;
    }
    llmpress::SparseCheckpointOptions options;
    options.format = llmpress::parse_sparse_format(format);
    const std::string t = type.empty() ? llmpress::tensor_type_name(stored) : type;
    if (t == "F16") options.dtype = at::kHalf;
    else if (t == "BF16") options.dtype = at::kBFloat16;
    else if (t == "F32") options.dtype = at::kFloat;
    else throw llmpress::Error("--type " + t + ": F32, F16 or BF16");
    std::vector<std::string> tokenizer_files;
    const fs::path dir = fs::is_directory(input) ? fs::path(input) : fs::path(input).parent_path();
    for (const char* name : {"tokenizer.model", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                             "generation_config.json"})
      if (fs::is_regular_file(dir / name)) tokenizer_files.push_back((dir / name).string());
    llmpress::write_sparse_checkpoint(output, checkpoint.config, tensors, tokenizer_files, options);

    const llmpress::Checkpoint back = llmpress::open_checkpoint(output);
    for (const llmpress::NamedTensor& tensor : tensors) {
      const at::Tensor expected = tensor.tensor.to(*options.dtype).to(at::kFloat);
      if (!at::equal(back.load(tensor.name), expected))
        throw llmpress::Error(output + ": " + tensor.name + " does not read back equal to " + input);
    }
    const uint64_t dense = folder_bytes(dir.string()), compressed = folder_bytes(output);
    std::printf("%s: %zu compressed layers, %s %s; folder %llu bytes (dense input %llu bytes, %.1f%%)\n",
                output.c_str(), back.sparse_linears.size(), format.c_str(), t.c_str(),
                (unsigned long long)compressed, (unsigned long long)dense, 100.0 * double(compressed) / double(dense));
  } catch (const llmpress::Error& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
  return 0;
}
