#include "llmpress/export/tokenizer_files.h"

#include <stdlib.h>

#include <filesystem>

#include "llmpress/core/error.h"
#include "llmpress/core/log.h"
#include "llmpress/io/checkpoint.h"

namespace llmpress {

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
    log_warning(checkpoint.path + " has no tokenizer file; the output gets none (pass --tokenizer later)");
    return;
  }
  fs::path file = checkpoint.tokenizer_file;
  if (file.extension() == ".bin") {
    const fs::path model = fs::path(file).replace_extension(".model");
    if (!fs::is_regular_file(model)) {
      log_warning("no SentencePiece model beside " + file.string() + "; the output gets no tokenizer");
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

}  // namespace llmpress
