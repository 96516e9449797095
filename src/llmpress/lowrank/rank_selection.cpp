#include "llmpress/lowrank/rank_selection.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <regex>

#include "llmpress/core/error.h"

namespace llmpress {

void RankSpec::check() const {
  for (const auto& [pattern, r] : overrides) {
    try {
      std::regex re(pattern);
    } catch (const std::regex_error& e) {
      throw Error("rank override '" + pattern + "': not a valid regular expression (" + e.what() + ")");
    }
    if (r < 0) throw Error("rank override '" + pattern + "': the rank must be >= 0 (0 keeps the layer dense)");
  }
  if (ratio >= 0 && !(ratio > 0)) throw Error("--ratio must be > 0 (the fraction of parameters kept)");
  if (rank < 0) throw Error("--rank must be > 0");
  if (ratio < 0 && rank == 0 && allocated.empty() && overrides.empty())
    throw Error("choose the ranks: --ratio R (fraction of parameters kept) or --rank N");
}

std::string RankSpec::describe() const {
  char text[96];
  if (!allocated.empty()) std::snprintf(text, sizeof text, "allocated ranks (ratio %g)", ratio);
  else if (ratio >= 0) std::snprintf(text, sizeof text, "ratio %g", ratio);
  else if (rank > 0) std::snprintf(text, sizeof text, "rank %lld", (long long)rank);
  else std::snprintf(text, sizeof text, "overrides only");
  std::string out = text;
  for (const auto& [pattern, r] : overrides) out += " " + pattern + "=" + std::to_string(r);
  return out;
}

int64_t RankSpec::rank_for(const std::string& name, int64_t out, int64_t in) const {
  int64_t r = 0;
  bool chosen = false;
  for (const auto& [pattern, value] : overrides) {
    if (std::regex_search(name, std::regex(pattern))) {
      r = value;
      chosen = true;
      break;
    }
  }
  if (!chosen) {
    if (auto it = allocated.find(name); it != allocated.end()) r = it->second;
    else if (ratio >= 0) r = std::max<int64_t>(1, int64_t(std::floor(ratio * double(out) * double(in) / double(out + in))));
    else r = rank;
  }
  return std::min({r, out, in});
}

std::pair<std::string, int64_t> parse_rank_override(const std::string& text) {
  const size_t eq = text.rfind('=');
  const std::string bad = "rank override '" + text + "': expected REGEX=RANK, e.g. 'mlp\\.down_proj=64'";
  if (eq == std::string::npos || eq == 0 || eq + 1 == text.size()) throw Error(bad);
  const std::string number = text.substr(eq + 1);
  if (number.find_first_not_of("0123456789") != std::string::npos || number.size() > 12) throw Error(bad);
  return {text.substr(0, eq), std::stoll(number)};
}

}  // namespace llmpress
