#pragma once
// One way through for every compression job: a recipe's stages run in order, each reading the
// model one decoder layer at a time from the previous stage's output (the checkpoint for the
// first), and the last stage's layers are written in the output format (model_sink.h).
//
// Work folder: each stage leaves its layers in <work>/stage-K-METHOD/ (layer files, state.json).
// With a work folder of the user's, the calibration activations after every layer are kept too,
// and --resume continues a killed job in the stage and at the layer where it stopped (finished
// stages are not redone; the output is the same bit for bit). Without one, a temporary folder
// beside the output is used and removed at the end.
#include <string>
#include <vector>

#include "llmpress/calib/engine.h"
#include "llmpress/pipeline/model_sink.h"
#include "llmpress/pipeline/recipe.h"

namespace llmpress {

class Communicator;

struct RunOptions {
  at::Device device = at::kCPU;
  int64_t batch_samples = 8;  // calibration windows per forward pass
  std::string work_dir;
  bool resume = false;
  bool progress = true;
  bool measure_errors = false;  // per-linear output error ||(W - W')X||^2 in the stage reports
  // Data-parallel (null: one process): the engine's stages share the calibration samples (engine.h),
  // training stages their batches (trainer.h), other whole-model stages run whole on every rank; each rank
  // keeps its own work folder (rank R > 0 in WORK/rank-R) and rank 0 alone writes the output.
  const Communicator* group = nullptr;
};

struct StageReport {
  std::string method;
  std::string description;  // the compressor's own description
  double seconds = 0;
  int64_t resumed_layers = 0;
  std::vector<LinearReport> linears;
  std::vector<std::string> notes;
};

struct PipelineReport {
  std::vector<StageReport> stages;
  OutputSummary output;
  int64_t parameters_before = 0;       // of the input model
  int64_t calibration_tokens = 0;      // tokens in the calibration file
  int64_t calibration_samples = 0, calibration_seqlen = 0;
  double seconds = 0;
};

// Every check that needs no work: methods and their options, the order of the stages, targets
// and ignore patterns (each must match a linear layer of `config`), the output format and type,
// and calibration data where a stage needs it. Throws one Error naming the recipe line.
// Returns the resolved output.
OutputSpec check_recipe(const Recipe& recipe, const ModelConfig& config);

PipelineReport run_pipeline(const Recipe& recipe, const RunOptions& options);

}  // namespace llmpress
