#pragma once
// Rank allocation by per-layer sensitivity: every linear layer's decomposition says exactly how
// much calibration output error each of its components removes (MatrixDecomposition::
// component_errors), so ranks are bought greedily, one component at a time, in order of error
// removed per parameter, until the global parameter budget is spent.
#include <ATen/ATen.h>

#include <map>
#include <string>
#include <vector>

#include "llmpress/calib/engine.h"
#include "llmpress/lowrank/matrix_factorizer.h"

namespace llmpress {

struct LayerSpectrum {
  std::string name;  // full name, model.layers.3.mlp.up_proj
  int64_t out = 0, in = 0;
  // [k] float64: output error removed by component i, relative to the layer's output energy
  // ||W X||^2 (so that layers of different scales compare).
  at::Tensor errors;
};

// Ranks (0: dense) whose parameters, both factors counted and dense layers at out * in, stay
// within ratio * sum(out * in). Every layer gets at least rank 1; a layer becomes dense only when
// the error its remaining components remove is worth the extra parameters.
std::map<std::string, int64_t> allocate_ranks(const std::vector<LayerSpectrum>& layers, double ratio);

// One pass of the calibration engine over the unmodified model that records every linear layer's
// spectrum under `factorizer` (the layer inputs are those of the dense model).
std::vector<LayerSpectrum> measure_spectra(const LayerSource& source, const Transformer& shell,
                                           const at::Tensor& tokens, const MatrixFactorizer& factorizer,
                                           EngineOptions options);

}  // namespace llmpress
