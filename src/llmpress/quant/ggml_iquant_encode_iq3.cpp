// IQ3_XXS and IQ3_S encoders, byte-identical with ggml_quantize_chunk (llama.cpp c392e5094) with and
// without importance. Bit-exactness depends on ggml's fp32 operations in ggml's order, so every sum runs
// left to right and every product keeps ggml's grouping ((w*x)*q, (w*diff)*diff).
//
// Both types code a group of 32 elements with one scale. Signs are stored apart; each run of 4
// magnitudes becomes one point of a grid of 3-bit level quadruples (magnitude 2l + 1 per element). The
// group scale is the best weighted least-squares fit over candidate inverse scales; a run whose rounded
// levels are not a grid point takes the best of the grid points nearest to them. The group scales are
// then coded as 4-bit multiples of one f16 super-block scale.
#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstring>
#include <utility>
#include <vector>

#include "llmpress/quant/ggml_block_bytes.h"
#include "llmpress/quant/ggml_block_search.h"
#include "llmpress/quant/ggml_blocks.h"
#include "llmpress/quant/ggml_iquant_tables.h"

namespace llmpress {
namespace {

using ggml_blocks::nearest_int;
using ggml_blocks::store_f16;
using ggml_tables::grid_byte;

constexpr int QK = int(kSuperBlockElements);
constexpr int kGroup = 32;               // elements sharing one scale
constexpr int kGroups = QK / kGroup;
constexpr int kRuns = kGroup / 4;        // grid points per group
constexpr int kLevels = 8;               // 3-bit levels
constexpr int kKeys = 1 << 12;           // level quadruples, key l0 | l1 << 3 | l2 << 6 | l3 << 9
constexpr int64_t kXxsBytes = 98, kSBytes = 110;
constexpr float kXxsGroupEps = 1e-8f;    // IQ3_XXS treats groups below this as zero (not kGroupMaxEps)

// ---- grids -------------------------------------------------------------------------------

// One of the two grids, with ggml's lookup structures: the grid index of every on-grid key and, for
// every other key, the grid points in its `shells` smallest squared distances, nearest first (ties by
// index). The order matters: among equally good neighbours the first one wins.
// The search works on levels l (magnitude 2l + 1) whatever the decoder's values: IQ3_XXS decodes
// level l as a non-uniform byte (4, 12, ..., 52, 62), so a point's levels are the positions of its bytes
// in `decoded`.
class Iq3Grid {
 public:
  Iq3Grid(const uint32_t* entries, int size, const uint8_t (&decoded)[kLevels], int shells)
      : points_(size), index_(kKeys, -1), first_(kKeys + 1, 0) {
    for (int g = 0; g < size; ++g) {
      Point& p = points_[g];
      for (int j = 0; j < 4; ++j) {
        p.level[j] = int8_t(std::find(decoded, decoded + kLevels, grid_byte(entries[g], j)) - decoded);
        p.magnitude[j] = float(2 * p.level[j] + 1);
        p.key = uint16_t(p.key | (p.level[j] << (3 * j)));
      }
      index_[p.key] = int16_t(g);
    }
    std::vector<std::pair<int, int>> by_distance(size);  // (d2, grid index)
    for (int key = 0; key < kKeys; ++key) {
      first_[key] = uint32_t(neighbours_.size());
      if (index_[key] >= 0) continue;
      for (int g = 0; g < size; ++g) {
        int d2 = 0;
        for (int j = 0; j < 4; ++j) {
          const int diff = 2 * (level(g, j) - ((key >> (3 * j)) & 7));
          d2 += diff * diff;
        }
        by_distance[g] = {d2, g};
      }
      std::sort(by_distance.begin(), by_distance.end());
      int distances = 1;
      for (int i = 0; i < size; ++i) {
        if (i > 0 && by_distance[i].first > by_distance[i - 1].first && ++distances > shells) break;
        neighbours_.push_back(uint16_t(by_distance[i].second));
      }
    }
    first_[kKeys] = uint32_t(neighbours_.size());
  }

  int index(int key) const { return index_[key]; }  // -1 off the grid
  int key_of_point(int g) const { return points_[g].key; }
  int level(int g, int j) const { return points_[g].level[j]; }
  float magnitude(int g, int j) const { return points_[g].magnitude[j]; }
  const uint16_t* neighbours_begin(int key) const { return neighbours_.data() + first_[key]; }
  const uint16_t* neighbours_end(int key) const { return neighbours_.data() + first_[key + 1]; }

 private:
  struct Point {
    float magnitude[4];
    int8_t level[4];
    uint16_t key = 0;
  };
  std::vector<Point> points_;
  std::vector<int16_t> index_;   // per key
  std::vector<uint32_t> first_;  // neighbours of key k: neighbours_[first_[k], first_[k + 1])
  std::vector<uint16_t> neighbours_;
};

// Built once on first use (thread-safe static initialization).
const Iq3Grid& xxs_grid() {
  static const uint8_t decoded[kLevels] = {4, 12, 20, 28, 36, 44, 52, 62};
  static const Iq3Grid grid(ggml_tables::kIq3xxsGrid, 256, decoded, 2);
  return grid;
}
const Iq3Grid& s_grid() {
  static const uint8_t decoded[kLevels] = {1, 3, 5, 7, 9, 11, 13, 15};
  static const Iq3Grid grid(ggml_tables::kIq3sGrid, 512, decoded, 3);
  return grid;
}

// ---- group search ------------------------------------------------------------------------

// One group's inputs: magnitudes (IQ3_XXS may negate one per run of 8, see fold_signs_even_parity),
// weights, sqrt(weights).
struct Group {
  float xval[kGroup], weight[kGroup], waux[kGroup];
};

// The chosen levels and each run's "rounded onto the grid" flag. ggml keeps them from group to group
// (and IQ3_XXS does not reset the flags): a group where no candidate scale is accepted reuses them.
// ggml starts a row with them uninitialized; we start from level 0, a grid point of both grids.
struct Carried {
  int8_t levels[kGroup] = {};
  bool on_grid[kRuns] = {true, true, true, true, true, true, true, true};
};

// How the two types' searches differ.
struct Rules {
  int steps;         // candidate inverse scales (15 + 0.2 s) / max for s in [-steps, steps]
  bool reset_flags;  // IQ3_S clears the carried on-grid flags before searching
  bool refine_all;   // IQ3_S re-rounds every run after the search, IQ3_XXS only the off-grid ones
};
constexpr Rules kXxsRules{15, false, false}, kSRules{9, true, true};

float max_of(const float* v, int n) {
  float m = v[0];
  for (int i = 1; i < n; ++i) m = m > v[i] ? m : v[i];
  return m;
}

// w = x^2 without importance, else I * sqrt(sigma2 + x^2); waux = sqrt(w) weighs the neighbour choice.
void group_weights(const float* x, const float* importance, float sigma2, Group& grp) {
  for (int i = 0; i < kGroup; ++i)
    grp.weight[i] = importance ? importance[i] * std::sqrt(sigma2 + x[i] * x[i]) : x[i] * x[i];
  for (int i = 0; i < kGroup; ++i) grp.waux[i] = std::sqrt(grp.weight[i]);
}

// IQ3_S: |x| and one full sign byte per run of 8 (bit i set: element i negative).
void fold_signs(const float* x, Group& grp, uint8_t* signs) {
  for (int r = 0; r < kGroup / 8; ++r) {
    uint8_t s = 0;
    for (int i = 0; i < 8; ++i) {
      const float v = x[8 * r + i];
      grp.xval[8 * r + i] = v >= 0 ? v : -v;
      if (!(v >= 0)) s |= uint8_t(1 << i);
    }
    signs[r] = s;
  }
}

// IQ3_XXS stores 7 sign bits per run of 8, the 8th implied by even parity. With an odd count of
// negatives the element of least w*x*x has its sign flipped, and its magnitude negated so the fit
// approximates what will be decoded.
void fold_signs_even_parity(const float* x, Group& grp, uint8_t* signs) {
  for (int r = 0; r < kGroup / 8; ++r) {
    const float* xr = x + 8 * r;
    float* xv = grp.xval + 8 * r;
    const float* w = grp.weight + 8 * r;
    uint8_t s = 0;
    int negatives = 0;
    for (int i = 0; i < 8; ++i) {
      xv[i] = xr[i] >= 0 ? xr[i] : -xr[i];
      if (!(xr[i] >= 0)) {
        s |= uint8_t(1 << i);
        ++negatives;
      }
    }
    if (negatives % 2) {
      int imin = 0;
      float min = w[0] * xr[0] * xr[0];
      for (int i = 1; i < 8; ++i) {
        const float a = w[i] * xr[i] * xr[i];
        if (a < min) {
          min = a;
          imin = i;
        }
      }
      xv[imin] = -xv[imin];
      s ^= uint8_t(1 << imin);
    }
    signs[r] = s & 127;
  }
}

// Among the neighbours of an off-grid key, the point nearest (weighted by wv) to xv at `scale`.
int best_neighbour(const Iq3Grid& grid, int key, const float* xv, const float* wv, float scale) {
  float best_d2 = FLT_MAX;
  int best = *grid.neighbours_begin(key);
  for (const uint16_t* p = grid.neighbours_begin(key); p != grid.neighbours_end(key); ++p) {
    float d2 = 0;
    for (int i = 0; i < 4; ++i) {
      const float diff = scale * grid.magnitude(*p, i) - xv[i];
      d2 += wv[i] * diff * diff;
    }
    if (d2 < best_d2) {
      best_d2 = d2;
      best = *p;
    }
  }
  return best;
}

// One run of 4 at inverse scale id: levels round(0.5 (id x - 1)) clamped to [0, 7]; off the grid, the
// best neighbour at `scale` instead. Writes the chosen point's levels; returns whether rounding hit the grid.
bool quantize_run(const Iq3Grid& grid, const float* xv, const float* wv, float id, float scale, int8_t* levels) {
  int key = 0;
  for (int i = 0; i < 4; ++i) {
    const int l = std::max(0, std::min(kLevels - 1, nearest_int(0.5f * (id * xv[i] - 1))));
    key |= l << (3 * i);
  }
  int g = grid.index(key);
  const bool on_grid = g >= 0;
  if (!on_grid) g = best_neighbour(grid, key, xv, wv, scale);
  for (int i = 0; i < 4; ++i) levels[i] = int8_t(grid.level(g, i));
  return on_grid;
}

void weighted_sums(const Group& grp, const int8_t* levels, float& sumqx, float& sumq2) {
  sumqx = 0;
  sumq2 = 0;
  for (int i = 0; i < kGroup; ++i) {
    const float w = grp.weight[i];
    const float q = float(2 * levels[i] + 1);
    sumqx += w * grp.xval[i] * q;
    sumq2 += w * q * q;
  }
}

// The candidate scale maximizing sumqx^2 / sumq2; its levels and flags go to `carried`. Without an
// accepted candidate the scale stays max / 15 and `carried` is left as it was.
float search_scale(const Iq3Grid& grid, const Group& grp, float max, const Rules& rules, Carried& carried) {
  if (rules.reset_flags) std::fill(carried.on_grid, carried.on_grid + kRuns, false);
  int8_t trial[kGroup];
  bool trial_on_grid[kRuns];
  float best = 0;
  float scale = max / float(2 * kLevels - 1);
  for (int s = -rules.steps; s <= rules.steps; ++s) {
    const float id = (float(2 * kLevels - 1) + float(s) * 0.2f) / max;
    const float this_scale = 1 / id;
    for (int r = 0; r < kRuns; ++r)
      trial_on_grid[r] = quantize_run(grid, grp.xval + 4 * r, grp.waux + 4 * r, id, this_scale, trial + 4 * r);
    float sumqx, sumq2;
    weighted_sums(grp, trial, sumqx, sumq2);
    if (sumq2 > 0 && sumqx * sumqx > best * sumq2) {
      scale = sumqx / sumq2;
      best = scale * sumqx;
      std::copy(trial, trial + kGroup, carried.levels);
      std::copy(trial_on_grid, trial_on_grid + kRuns, carried.on_grid);
    }
  }
  return scale;
}

// When some run was moved off its rounding, re-round the runs at the chosen scale and refit the scale.
// The flags are deliberately not updated (ggml carries the search's).
float refine_scale(const Iq3Grid& grid, const Group& grp, float scale, const Rules& rules, Carried& carried) {
  const bool any_off_grid = std::find(carried.on_grid, carried.on_grid + kRuns, false) != carried.on_grid + kRuns;
  if (!(any_off_grid && scale > 0)) return scale;
  const float id = 1 / scale;
  for (int r = 0; r < kRuns; ++r) {
    if (!rules.refine_all && carried.on_grid[r]) continue;
    quantize_run(grid, grp.xval + 4 * r, grp.waux + 4 * r, id, scale, carried.levels + 4 * r);
  }
  float sumqx, sumq2;
  weighted_sums(grp, carried.levels, sumqx, sumq2);
  return sumq2 > 0 ? sumqx / sumq2 : scale;
}

// Grid index of run r of the carried levels (always a grid point: they come from grid points or are 0).
int grid_index(const Iq3Grid& grid, const Carried& carried, int r) {
  const int8_t* l = carried.levels + 4 * r;
  return grid.index(l[0] | (l[1] << 3) | (l[2] << 6) | (l[3] << 9));
}

// ---- super-blocks ------------------------------------------------------------------------

float imatrix_sigma2(const float* x) {
  float sumx2 = 0;
  for (int i = 0; i < QK; ++i) sumx2 += x[i] * x[i];
  return 2 * sumx2 / QK;
}

// 4-bit code of a group scale under the super-block scale d: scale ~ d (2 code + 1).
int scale_code(float id, float scale) { return std::max(0, std::min(15, nearest_int(0.5f * (id * scale - 1)))); }

// IQ3_XXS (98 bytes, layout in ggml_iquant_blocks.cpp): indices [64] @2, per group a LE u32 @66 + 4g with
// four 7-bit sign fields and the scale code in bits 28-31.
void encode_xxs_block(const float* x, const float* importance, Carried& carried, uint8_t* dst) {
  const Iq3Grid& grid = xxs_grid();
  const float sigma2 = imatrix_sigma2(x);
  uint8_t indices[kGroups * kRuns] = {};
  uint32_t words[kGroups] = {};
  float scales[kGroups];
  float max_scale = 0;
  for (int g = 0; g < kGroups; ++g) {
    Group grp;
    uint8_t signs[4];
    group_weights(x + kGroup * g, importance ? importance + kGroup * g : nullptr, sigma2, grp);
    fold_signs_even_parity(x + kGroup * g, grp, signs);
    const float max = max_of(grp.xval, kGroup);
    if (max < kXxsGroupEps) {
      scales[g] = 0;
      std::fill(carried.levels, carried.levels + kGroup, int8_t(0));
      continue;
    }
    float scale = search_scale(grid, grp, max, kXxsRules, carried);
    scale = refine_scale(grid, grp, scale, kXxsRules, carried);
    if (scale < 0) {  // the scale code is unsigned: negate the scale and the signs instead
      scale = -scale;
      for (uint8_t& s : signs) s = uint8_t(~s & 127);
    }
    for (int r = 0; r < kRuns; ++r) indices[kRuns * g + r] = uint8_t(grid_index(grid, carried, r));
    words[g] = uint32_t(signs[0]) | uint32_t(signs[1]) << 7 | uint32_t(signs[2]) << 14 | uint32_t(signs[3]) << 21;
    scales[g] = scale;
    max_scale = max_scale > scale ? max_scale : scale;
  }
  std::memset(dst, 0, kXxsBytes);
  if (max_scale == 0) return;
  const float d = max_scale / 31;
  store_f16(dst, d * 1.0125f);
  const float id = 1 / d;
  std::memcpy(dst + 2, indices, sizeof indices);
  for (int g = 0; g < kGroups; ++g) {
    const uint32_t word = words[g] | uint32_t(scale_code(id, scales[g])) << 28;
    for (int b = 0; b < 4; ++b) dst[66 + 4 * g + b] = uint8_t(word >> (8 * b));
  }
}

// IQ3_S (110 bytes): index low bytes [64] @2, qh[8] @66, sign bytes [32] @74, scale nibbles [4] @106.
// ggml advances its index and sign write positions only past groups it codes: after an all-zero group
// the later groups' indices and signs land one group early (qh and scales stay in place). Kept for
// identical bytes.
void encode_s_block(const float* x, const float* importance, Carried& carried, uint8_t* dst) {
  const Iq3Grid& grid = s_grid();
  const float sigma2 = imatrix_sigma2(x);
  std::memset(dst, 0, kSBytes);
  uint8_t* qs = dst + 2;
  uint8_t* qh = dst + 66;
  uint8_t* sign_bytes = dst + 74;
  float scales[kGroups];
  float max_scale = 0;
  for (int g = 0; g < kGroups; ++g) {
    Group grp;
    uint8_t signs[4];
    group_weights(x + kGroup * g, importance ? importance + kGroup * g : nullptr, sigma2, grp);
    fold_signs(x + kGroup * g, grp, signs);
    const float max = max_of(grp.xval, kGroup);
    if (max == 0) {
      scales[g] = 0;
      continue;
    }
    float scale = search_scale(grid, grp, max, kSRules, carried);
    scale = refine_scale(grid, grp, scale, kSRules, carried);
    if (scale < 0) {
      scale = -scale;
      for (uint8_t& s : signs) s = uint8_t(~s);
    }
    for (int r = 0; r < kRuns; ++r) {
      const int index = grid_index(grid, carried, r);
      qs[r] = uint8_t(index & 255);
      qh[g] |= uint8_t((index >> 8) << r);
    }
    std::memcpy(sign_bytes, signs, 4);
    qs += kRuns;
    sign_bytes += 4;
    scales[g] = scale;
    max_scale = max_scale > scale ? max_scale : scale;
  }
  if (max_scale == 0) return;  // indices and signs already written stay
  const float d = max_scale / 31;
  store_f16(dst, d * 1.033f);
  const float id = 1 / d;
  for (int g = 0; g < kGroups; g += 2)
    dst[106 + g / 2] = uint8_t(scale_code(id, scales[g]) | (scale_code(id, scales[g + 1]) << 4));
}

using BlockEncoder = void (*)(const float*, const float*, Carried&, uint8_t*);

// Blocks in order with one Carried (ggml's group state lives for a row).
void encode_blocks(BlockEncoder encode, int64_t block_bytes, const float* x, int64_t n, const float* importance,
                   uint8_t* dst) {
  Carried carried;
  for (int64_t b = 0; b < n / QK; ++b)
    encode(x + b * QK, importance ? importance + b * QK : nullptr, carried, dst + b * block_bytes);
}

}  // namespace

void quantize_iq3_xxs(const float* src, int64_t count, uint8_t* dst) {
  encode_blocks(encode_xxs_block, kXxsBytes, src, count, nullptr, dst);
}
void quantize_iq3_s(const float* src, int64_t count, uint8_t* dst) {
  encode_blocks(encode_s_block, kSBytes, src, count, nullptr, dst);
}
void quantize_iq3_xxs_weighted(const float* row, int64_t n, const float* importance, uint8_t* dst) {
  encode_blocks(encode_xxs_block, kXxsBytes, row, n, importance, dst);
}
void quantize_iq3_s_weighted(const float* row, int64_t n, const float* importance, uint8_t* dst) {
  encode_blocks(encode_s_block, kSBytes, row, n, importance, dst);
}

}  // namespace llmpress
