#include "llmpress/export/rope_layout.h"

#include <vector>

#include "llmpress/core/error.h"

namespace llmpress {

at::Tensor half_split_to_interleaved(const at::Tensor& rows, int64_t heads) {
  if (heads <= 0 || rows.dim() < 1 || rows.size(0) % heads != 0 || (rows.size(0) / heads) % 2 != 0)
    throw Error("cannot permute RoPE rows: " + std::to_string(rows.dim() ? rows.size(0) : 0) +
                " rows do not split into " + std::to_string(heads) + " heads of an even size");
  const int64_t half = rows.size(0) / heads / 2;
  std::vector<int64_t> split = {heads, 2, half};
  for (int64_t d = 1; d < rows.dim(); ++d) split.push_back(rows.size(d));
  // [H, 2 (t), D/2 (j), ...] -> [H, D/2 (j), 2 (t), ...]: row h*D + 2j + t takes half-split row h*D + t*D/2 + j.
  return rows.reshape(split).transpose(1, 2).contiguous().reshape(rows.sizes());
}

}  // namespace llmpress
