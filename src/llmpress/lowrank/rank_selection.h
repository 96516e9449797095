#pragma once
// Which rank each linear layer gets: a uniform parameter ratio, a fixed rank, per-tensor regex
// overrides, or ranks from an allocation (rank_allocation.h). Rank 0 means "keep dense".
#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

namespace llmpress {

struct RankSpec {
  // Fraction of each linear layer's parameters kept, both factors counted:
  // r = floor(ratio * out * in / (out + in)). Negative: not set.
  double ratio = -1;
  int64_t rank = 0;  // the same rank for every linear layer (when > 0 and ratio is not set)
  // REGEX=RANK, matched (std::regex_search) against the full name ("model.layers.3.mlp.up_proj");
  // the first match wins over everything else. RANK 0 keeps the layer dense.
  std::vector<std::pair<std::string, int64_t>> overrides;
  // Ranks by full name (an allocation's result); used for the names it contains.
  std::map<std::string, int64_t> allocated;

  // Throws for an invalid regex or a negative rank, and when neither ratio, rank nor an
  // allocation is given.
  void check() const;
  std::string describe() const;
  // The rank for this layer before the size check, capped at min(out, in); 0: dense.
  int64_t rank_for(const std::string& name, int64_t out, int64_t in) const;
};

// "REGEX=RANK" (split at the last '='), with a clear error for anything else.
std::pair<std::string, int64_t> parse_rank_override(const std::string& text);

}  // namespace llmpress
