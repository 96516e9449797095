#pragma once
// Whole decoder layers removed (ShortGPT, Men et al. 2024): the layers whose output is closest in
// direction to their input on calibration data (lowest block influence 1 - cos) change the
// hidden state least and go first.
#include <vector>

#include "llmpress/model/transformer.h"
#include "llmpress/prune/structure_stats.h"

namespace llmpress {

// Indices (ascending) of the `count` layers of lowest block influence. Throws Error unless
// 0 <= count < number of layers.
std::vector<int64_t> least_influential_layers(const std::vector<LayerStructureStats>& stats, int64_t count);

// Removes those decoder layers; config.num_layers follows. Indices must be valid and distinct.
void remove_layers(Transformer& model, const std::vector<int64_t>& indices);

}  // namespace llmpress
