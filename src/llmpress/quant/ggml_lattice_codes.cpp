#include "llmpress/quant/ggml_lattice_codes.h"

#include "llmpress/core/error.h"
#include "llmpress/quant/ggml_lattice_codes_detail.h"

namespace llmpress {

bool has_lattice_codes(TensorType type) {
  switch (type) {
    case TensorType::IQ1_S: case TensorType::IQ1_M: case TensorType::IQ2_XXS: case TensorType::IQ2_XS:
    case TensorType::IQ2_S: case TensorType::IQ3_XXS: case TensorType::IQ3_S:
      return true;
    default: return false;
  }
}

void write_nearest_group(TensorType type, uint8_t* block, int g, const float* target, const float* weight) {
  if (g < 0 || g >= 32) throw Error("lattice group " + std::to_string(g) + " is outside the 256-element block");
  switch (type) {
    case TensorType::IQ2_XXS: case TensorType::IQ2_XS: case TensorType::IQ2_S:
      return ggml_lattice_detail::write_nearest_group_iq2(type, block, g, target, weight);
    case TensorType::IQ3_XXS: case TensorType::IQ3_S: case TensorType::IQ1_S: case TensorType::IQ1_M:
      return ggml_lattice_detail::write_nearest_group_iq3_iq1(type, block, g, target, weight);
    default: throw Error("no lattice code layout for ggml type " + tensor_type_name(type));
  }
}

}  // namespace llmpress
