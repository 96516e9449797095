#pragma once
// A recipe says how a model is made: the model, the calibration data, an ordered list of stages
// (each one method with its options and the linear layers it targets), and the output. Every
// command line (quantize, prune, lowrank) is a one-stage recipe; `llmpress run` reads one from
// YAML, in the shape of llm-compressor's recipes:
//
//   model: ../shared/models/gutenberg-dev-llama-5m
//   calibration: {file: ../shared/data/gutenberg-dev-calib.txt, nsamples: 32, seqlen: 256}
//   stages:
//     - method: sparsegpt
//       pattern: "2:4"
//     - method: gptq
//       bits: 4
//       group: 128
//       ignore: ['mlp\.down_proj']
//   output: {path: out-gptq, format: gptq}
#include <nlohmann/json.hpp>

#include <map>
#include <string>
#include <vector>

namespace llmpress {

// Where a recipe value came from, for errors that name it ("recipe.yaml:12").
struct SourceLine {
  std::string file;  // empty: the command line
  int line = 0;
  std::string describe() const;  // "recipe.yaml:12", or "the command line"
};

struct CalibrationSpec {
  std::string file;  // empty: no calibration data
  int64_t nsamples = 128;
  int64_t seqlen = 512;
  uint64_t seed = 0;
};

struct StageSpec {
  std::string method;
  nlohmann::json options = nlohmann::json::object();  // the method's options by name
  std::vector<std::string> targets;  // regexes on linear names (model.layers.3.mlp.down_proj); empty: all
  std::vector<std::string> ignore;   // regexes of linear layers this stage leaves as they are
  SourceLine where;
  std::map<std::string, SourceLine> option_lines;
};

struct OutputSpec {
  std::string path;
  std::string format;  // gguf, hf, gptq, factorized; empty: decided from the path and the stages
  std::string type;    // gguf: llama-quantize mix or tensor type (Q4_K_M, Q8_0, F16); hf: F32, F16, BF16
  std::vector<std::string> tensor_types;  // gguf: REGEX=TYPE overrides
  SourceLine where;
};

struct Recipe {
  std::string model;
  std::string tokenizer;
  CalibrationSpec calibration;
  std::vector<StageSpec> stages;
  OutputSpec output;
  SourceLine where;
};

// Parses YAML text; `file` names it in errors. Unknown keys and wrong value types fail with one
// Error naming the line. Method names and options are checked later (check_recipe).
Recipe parse_recipe(const std::string& text, const std::string& file = "recipe");
Recipe load_recipe(const std::string& path);
std::string recipe_to_yaml(const Recipe& recipe);
nlohmann::json recipe_to_json(const Recipe& recipe);

}  // namespace llmpress
