#pragma once
// The sequential calibration engine (GPTQ / SparseGPT papers): calibration tokens go through the
// model one decoder layer at a time; each layer is compressed from statistics of its own inputs
// (which already reflect every earlier compressed layer), then its outputs are recomputed with the
// compressed weights and become the next layer's inputs.
//
// Memory: only one decoder layer's weights are resident (plus embeddings, final norm and head),
// but the hidden states of ALL calibration samples are: [nsamples, seqlen, hidden] float32 for the
// layer inputs plus the same again for its outputs (128 x 512 x 4096 x 4 B = 1 GiB each for a 7B).
#include <ATen/ATen.h>

#include <functional>
#include <string>
#include <vector>

#include "llmpress/calib/compressor.h"
#include "llmpress/model/layer_source.h"
#include "llmpress/model/transformer.h"

namespace llmpress {

class Communicator;

struct EngineOptions {
  at::Device device = at::kCPU;
  // Compress in execution order q,k,v -> o -> gate,up -> down, recapturing the inputs after each
  // group so that later sublayers see the compressed earlier ones (the GPTQ reference's
  // --true-sequential). Otherwise all seven are compressed from one capture of the dense layer.
  bool true_sequential = true;
  int64_t batch_samples = 8;  // calibration samples per forward pass
  // Also measure each linear layer's output error ||(W - W')X||^2 (adds a Hessian if the
  // compressor does not ask for one).
  bool measure_errors = false;
  // After each finished layer, the compressed layer (layer-I.bin, a layer file) and state.json are
  // written here atomically, and with save_inputs also the next layer's inputs (the resume point).
  // Empty: nothing is written.
  std::string work_dir;
  bool save_inputs = true;
  bool resume = false;  // continue from the last finished layer recorded in work_dir
  bool progress = true;
  // Data-parallel: this process's group (null: one process). Each rank runs its contiguous share of
  // the calibration samples through the layers and the statistics are summed across ranks, so every
  // rank compresses each layer from the statistics of all samples (as one process would; sums in
  // another order). work_dir must then be this rank's own; final_hidden holds every sample.
  const Communicator* group = nullptr;
  // Called for every finished layer in order (also for layers restored on resume) with the
  // compressed layer and its outputs [nsamples, seqlen, hidden] (undefined for restored layers
  // other than the last).
  std::function<void(int64_t index, const DecoderLayer& layer, const at::Tensor& outputs)> on_layer;
};

struct LinearReport {
  std::string name;  // model.layers.3.self_attn.q_proj
  std::string kind;  // kind of the replacement weight
  int64_t parameters = 0;
  int64_t storage_bits = 0;
  // ||(W - W')X||^2 summed over calibration tokens, and relative to ||WX||^2 (measure_errors).
  double output_error = -1;
  double relative_error = -1;
};

struct EngineResult {
  std::vector<LinearReport> linears;  // layers finished in this run, in order
  at::Tensor final_hidden;            // outputs of the last layer [nsamples, seqlen, hidden]
  int64_t resumed_layers = 0;         // layers restored from work_dir
  double seconds = 0;
  std::string job;                    // what identifies this run (source, method, calibration data)
};

// tokens: [nsamples, seqlen] int64 calibration windows. `shell` is source.load_shell on
// options.device; its layers are left empty (the caller gets them via on_layer or work_dir).
EngineResult compress_sequential(const LayerSource& source, const Transformer& shell, const at::Tensor& tokens,
                                 Compressor& compressor, const EngineOptions& options);

// The same over the layers of a checkpoint.
inline EngineResult compress_sequential(const Checkpoint& checkpoint, const Transformer& shell, const at::Tensor& tokens,
                                        Compressor& compressor, const EngineOptions& options) {
  return compress_sequential(CheckpointSource(checkpoint), shell, tokens, compressor, options);
}

// Where compress_sequential leaves layer `index` in a work folder (a layer file, model/layer_file.h).
std::string engine_layer_file(const std::string& work_dir, int64_t index);
// Removes the calibration activations compress_sequential saved in a work folder (the bulk of it),
// once the job's output is written: a later --resume of the stage recomputes them.
void remove_saved_activations(const std::string& work_dir);

}  // namespace llmpress
