#pragma once
// The method registry: every compression method a pipeline stage can run, by name, with its
// options and what it needs and makes. A method is a file in pipeline/methods/ that registers
// itself (static const MethodRegistration ...); the command-line front-ends, recipes and the
// pipeline all find it here.
#include <ATen/ATen.h>
#include <nlohmann/json.hpp>

#include <functional>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "llmpress/calib/compressor.h"
#include "llmpress/core/error.h"
#include "llmpress/model/layer_source.h"
#include "llmpress/pipeline/recipe.h"

namespace llmpress {

class Checkpoint;
struct MethodSpec;

enum class OptionType { Integer, Number, Boolean, String, StringList };

struct OptionSpec {
  std::string name;
  OptionType type;
  nlohmann::json default_value;  // null: unset unless given
  std::string help;
};

// One stage's options, checked against its method's option list, with the defaults filled in.
class StageOptions {
 public:
  // Throws Error naming the recipe line for an unknown option or a value of the wrong type.
  StageOptions(const MethodSpec& method, const StageSpec& stage);
  int64_t integer(const std::string& name) const;
  double number(const std::string& name) const;
  bool flag(const std::string& name) const;
  std::string text(const std::string& name) const;  // "" when unset
  std::vector<std::string> list(const std::string& name) const;
  bool given(const std::string& name) const { return given_.count(name) != 0; }
  // An Error about option `name` that names where it was given.
  Error error(const std::string& name, const std::string& problem) const;
  // An Error about the stage as a whole, naming its line.
  Error error(const std::string& problem) const;
  const std::string& method() const { return method_; }

 private:
  const nlohmann::json& value(const std::string& name) const;
  std::string method_;
  nlohmann::json values_;
  std::set<std::string> given_;
  const StageSpec* stage_;
};

// What the model is like between stages, to check the order of stages before any work.
struct ModelState {
  bool pruned = false;      // unstructured / N:M zeros (a pruning mask)
  bool quantized = false;   // weights on a grid
  bool ggml = false;        // ... and that grid is ggml blocks (else an integer grid)
  bool factorized = false;  // low-rank or Tucker layers
  std::string ggml_mix;     // the llama-quantize mix the ggml stage used
  bool adapter = false;     // LoRA adapters left unmerged: the output is the adapter alone
};

// What a running stage may use.
class Communicator;

struct StageContext {
  const LayerSource& source;      // the model as this stage receives it
  const ModelConfig& config;
  const Checkpoint& origin;       // the pipeline's input (tokenizer, file names)
  const at::Tensor& calibration;  // [nsamples, seqlen] tokens; [0, 1] when there are none
  at::Device device;
  int64_t batch_samples = 8;
  bool progress = true;
  std::vector<std::string>* notes;  // lines for the report (e.g. the ranks allocation chose)
  std::string stage_dir;            // this stage's folder in the work folder
  bool user_work_dir = false;       // the work folder is the user's (kept): a stage may leave resume points there
  bool resume = false;              // --resume: continue from them
  const Communicator* group = nullptr;  // data-parallel: training stages share their batches over it
};

struct MethodSpec {
  std::string name;
  std::string family;   // "quantize", "prune", "lowrank" (the command that runs it), "train" or "distill"
  std::string summary;  // one line for --help and error messages
  std::vector<OptionSpec> options;
  std::function<bool(const StageOptions&)> needs_calibration;
  // Checks the options and that the stage can follow the earlier ones (`state` is the model
  // before it); then updates `state` to what the stage makes. Throws Error (use options.error).
  std::function<void(const StageOptions&, ModelState& state)> check;
  // One-shot methods: the compressor the sequential engine applies to each targeted linear layer.
  std::function<std::unique_ptr<Compressor>(const StageOptions&, const StageContext&)> compressor;
  // Whole-model methods (structured pruning): rewrites the loaded model, returns a summary line.
  std::function<std::string(Transformer&, const StageOptions&, const StageContext&)> transform;
  // A transform that trains: the embeddings, final norm and head change too (saved with the layers).
  bool trains = false;
};

struct MethodRegistration {
  explicit MethodRegistration(MethodSpec spec);
};

// Error naming the known methods when `name` is not one of them.
const MethodSpec& find_method(const std::string& name);
std::vector<const MethodSpec*> registered_methods(const std::string& family = "");
// "rtn, gptq, awq" for the methods of a family, for help texts.
std::string method_names(const std::string& family);

}  // namespace llmpress
