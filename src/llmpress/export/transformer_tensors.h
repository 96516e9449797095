#pragma once
// Every tensor of a loaded (possibly compressed or shrunk) model under its Hugging Face name, ready
// for the writers: decoder linears as dense float32 (dequantized / zeros in place), CPU.
#include <vector>

#include "llmpress/export/named_tensor.h"
#include "llmpress/model/transformer.h"

namespace llmpress {

// lm_head.weight is left out when it is the embedding matrix itself (tied).
std::vector<NamedTensor> transformer_tensors(const Transformer& model);

}  // namespace llmpress
