#include "llmpress/cli/tokenizer_files.h"

#include <cstdio>
#include <cstdlib>
#include <filesystem>

#include "llmpress/core/error.h"

namespace llmpress::cli {

namespace fs = std::filesystem;

TokenizerFiles::~TokenizerFiles() {
  std::error_code ec;
  if (!staging.empty()) fs::remove_all(staging, ec);
}

void TokenizerFiles::add_as(const std::string& source, const std::string& name) {
  if (fs::path(source).filename() == name) {
    files.push_back(source);
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

}  // namespace llmpress::cli
