// write_nearest_group for IQ2_XXS, IQ2_XS and IQ2_S: the exact weighted-nearest code (grid entry and
// signs) of one group of 8 elements with the block's scales kept. Layouts as in ggml_iquant_blocks.cpp;
// every value is the decoder's own fp32 expression (db * float(grid byte), negated for a set sign bit).
//
// What "nearest" means, bit for bit: the error of a candidate is the sum over j = 0..7, in that order
// and in double, of double(w_j) * (e_j * e_j) with e_j = double(t_j) - double(v_j), v_j the decoded
// float; among candidates of equal error the lowest grid index wins, then the target's signs, then the
// lowest flipped element.
//
// Search. All three grids use the same three magnitudes (bytes 8, 25, 43), so per group each element's
// error is tabulated once for each level and both signs. The best sign of an element is its target's
// sign (against db's sign); the error of that choice can only grow when the sign is flipped. IQ2_S stores
// all 8 sign bits, so a grid entry's best error is the sum of its elements' best errors. IQ2_XXS/IQ2_XS
// store 7 bits and require an even count of minus signs: when the target's signs have odd parity (the
// same for every grid entry), the best legal pattern flips exactly one element, the one whose flip costs
// least (any pattern flipping more is dominated term by term, and rounding is monotone, so this holds
// for the rounded sums too). Pass 1 adds per-half tables (81 level patterns of 4 elements: error sum and
// cheapest flip), so an entry costs two or four lookups. Pass 2 re-scores in the exact order above,
// with each of the eight single flips where parity needs one, every entry within a relative 1e-12 of
// pass 1's best (pass 1 sums the same double terms in another order, so its rounding is far inside that
// margin, and terms made of floats never underflow or overflow in double): the choice is exact, ties
// and near-ties decided by rounding included. (Exact as long as the compiler does not contract
// `e += w * x` into a fused multiply-add differently from a caller's check; the default x86-64 build
// has no FMA.)
#include <cmath>
#include <string>
#include <vector>

#include "llmpress/core/error.h"
#include "llmpress/quant/ggml_block_bytes.h"
#include "llmpress/quant/ggml_iquant_tables.h"
#include "llmpress/quant/ggml_lattice_codes_detail.h"

namespace llmpress::ggml_lattice_detail {
namespace {

using ggml_blocks::load_f16;
using ggml_blocks::load_u32;
using ggml_blocks::store_u32;
using ggml_tables::grid_byte;

constexpr int kLevels = 3;
constexpr int kHalfPatterns = 81;  // 3^4 level patterns of 4 elements
constexpr double kMargin = 1e-12;  // pass 2 re-scores entries within this relative distance of pass 1's best


// One decoder grid, re-expressed per element as a level 0..2 of kLevelBytes; built once per type.
struct Iq2Grid {
  int size = 0;
  float level_value[kLevels] = {};  // float(grid byte) of each level, the decoder's factor
  std::vector<uint8_t> level;       // size * 8: level of element j of entry i at [8 i + j]
  std::vector<uint8_t> half;        // size * 2: base-3 pattern (l0 + 3 l1 + 9 l2 + 27 l3) of each half
};

Iq2Grid make_grid(const uint64_t* entries, int size) {
  static const uint8_t kLevelBytes[kLevels] = {0x08, 0x19, 0x2b};
  Iq2Grid grid;
  grid.size = size;
  for (int l = 0; l < kLevels; ++l) grid.level_value[l] = float(kLevelBytes[l]);
  grid.level.resize(size_t(size) * 8);
  grid.half.resize(size_t(size) * 2);
  for (int i = 0; i < size; ++i) {
    for (int j = 0; j < 8; ++j) {
      const uint8_t byte = grid_byte(entries[i], j);
      int l = 0;
      while (l < kLevels && kLevelBytes[l] != byte) ++l;
      if (l == kLevels) throw Error("IQ2 grid entry " + std::to_string(i) + " has an unexpected magnitude");
      grid.level[size_t(8 * i + j)] = uint8_t(l);
    }
    for (int h = 0; h < 2; ++h) {
      const uint8_t* lv = &grid.level[size_t(8 * i + 4 * h)];
      grid.half[size_t(2 * i + h)] = uint8_t(lv[0] + 3 * lv[1] + 9 * lv[2] + 27 * lv[3]);
    }
  }
  return grid;
}

const Iq2Grid& grid_for(TensorType type) {
  switch (type) {
    case TensorType::IQ2_XXS: {
      static const Iq2Grid grid = make_grid(ggml_tables::kIq2xxsGrid, 256);
      return grid;
    }
    case TensorType::IQ2_XS: {
      static const Iq2Grid grid = make_grid(ggml_tables::kIq2xsGrid, 512);
      return grid;
    }
    default: {
      static const Iq2Grid grid = make_grid(ggml_tables::kIq2sGrid, 1024);
      return grid;
    }
  }
}

// The scale of group g's run as the decoder computes it: d * (0.5 + s) * 0.25.
float group_scale(TensorType type, const uint8_t* block, int g) {
  const float d = load_f16(block);
  const int run_group = g / 4, l = g % 4;
  uint32_t s = 0;
  if (type == TensorType::IQ2_XXS) {
    s = load_u32(block + 2 + 8 * run_group + 4) >> 28;
  } else {
    const uint8_t sc = block[(type == TensorType::IQ2_XS ? 66 : 74) + run_group];
    s = l / 2 ? uint32_t(sc >> 4) : uint32_t(sc & 0xf);
  }
  return d * (0.5f + float(s)) * 0.25f;
}

// Stores grid entry `index` and the sign byte `signs` (even parity for IQ2_XXS/IQ2_XS) as group g's code.
void store_code(TensorType type, uint8_t* block, int g, int index, uint8_t signs) {
  const int run_group = g / 4, l = g % 4;
  if (type == TensorType::IQ2_XXS) {
    uint8_t* q = block + 2 + 8 * run_group;
    q[l] = uint8_t(index);
    const uint32_t aux = load_u32(q + 4);
    store_u32(q + 4, (aux & ~(127u << (7 * l))) | (uint32_t(signs & 127) << (7 * l)));
  } else if (type == TensorType::IQ2_XS) {
    const uint16_t q = uint16_t((index & 511) | ((signs & 127) << 9));
    block[2 + 2 * g] = uint8_t(q & 0xff);
    block[3 + 2 * g] = uint8_t(q >> 8);
  } else {
    block[2 + g] = uint8_t(index & 0xff);
    uint8_t& qh = block[66 + run_group];
    qh = uint8_t((qh & ~(3 << (2 * l))) | (((index >> 8) & 3) << (2 * l)));
    block[34 + g] = signs;
  }
}

}  // namespace

void write_nearest_group_iq2(TensorType type, uint8_t* block, int g, const float* target, const float* weight) {
  if (type != TensorType::IQ2_XXS && type != TensorType::IQ2_XS && type != TensorType::IQ2_S)
    throw Error("write_nearest_group_iq2: not an IQ2 type: " + tensor_type_name(type));
  if (g < 0 || g >= 32) throw Error("write_nearest_group_iq2: group " + std::to_string(g) + " outside 0..31");
  const Iq2Grid& grid = grid_for(type);
  const bool even_parity = type != TensorType::IQ2_S;
  const float db = group_scale(type, block, g);

  // Per element and level: the error with the target's sign (keep) and with the other sign (flip).
  // natural bit j set: element j decodes negated, i.e. the target and db have opposite signs.
  double keep[8][kLevels], flip[8][kLevels];
  uint8_t natural = 0;
  for (int j = 0; j < 8; ++j) {
    const bool negate = (target[j] < 0.0f) != (db < 0.0f);
    if (negate) natural |= uint8_t(1u << j);
    const double t = double(target[j]), w = double(weight[j]);
    for (int l = 0; l < kLevels; ++l) {
      const float v = db * grid.level_value[l];  // the decoder's value, sign bit clear
      const double e_plus = t - double(v), e_minus = t - double(-v);
      const double c_plus = w * (e_plus * e_plus), c_minus = w * (e_minus * e_minus);
      keep[j][l] = negate ? c_minus : c_plus;
      flip[j][l] = negate ? c_plus : c_minus;
    }
  }
  int parity = 0;
  for (int j = 0; j < 8; ++j) parity ^= (natural >> j) & 1;
  const bool fix_parity = even_parity && parity;

  // Pass 1: per half, the kept error of each of the 81 level patterns and its cheapest flip, as sums
  // (minima) of two element pairs: pattern l0 + 3 l1 + 9 l2 + 27 l3 = pair (l0, l1) + 9 * pair (l2, l3).
  double half_error[2][kHalfPatterns], half_flip[2][kHalfPatterns];
  for (int h = 0; h < 2; ++h) {
    double pair_error[2][9], pair_flip[2][9];
    for (int q = 0; q < 2; ++q) {
      const int j = 4 * h + 2 * q;
      for (int l1 = 0; l1 < kLevels; ++l1)
        for (int l0 = 0; l0 < kLevels; ++l0) {
          const double f0 = flip[j][l0] - keep[j][l0], f1 = flip[j + 1][l1] - keep[j + 1][l1];
          pair_error[q][l0 + 3 * l1] = keep[j][l0] + keep[j + 1][l1];
          pair_flip[q][l0 + 3 * l1] = f0 < f1 ? f0 : f1;
        }
    }
    for (int b = 0; b < 9; ++b)
      for (int a = 0; a < 9; ++a) {
        half_error[h][a + 9 * b] = pair_error[0][a] + pair_error[1][b];
        half_flip[h][a + 9 * b] = pair_flip[0][a] < pair_flip[1][b] ? pair_flip[0][a] : pair_flip[1][b];
      }
  }
  // Entry i's best error (approximate order of summation); entries within the margin of the best so
  // far are collected for pass 2, the list dropping those left behind when it fills up. Still full
  // (near-ties on a large scale) and pass 2 rescans the grid.
  const int n = grid.size;
  const uint8_t* halves = grid.half.data();
  const auto entry_cost = [&](int i) {
    const int p0 = halves[2 * i], p1 = halves[2 * i + 1];
    double c = half_error[0][p0] + half_error[1][p1];
    if (fix_parity) c += half_flip[0][p0] < half_flip[1][p1] ? half_flip[0][p0] : half_flip[1][p1];
    return c;
  };
  constexpr int kMaxCandidates = 32;
  int candidate[kMaxCandidates];
  double candidate_cost[kMaxCandidates];
  int candidates = 0;
  bool overflow = false;
  double best = HUGE_VAL, limit = HUGE_VAL;
  for (int i = 0; i < n; ++i) {
    const double c = entry_cost(i);
    if (!(c <= limit)) continue;
    if (c < best) best = c, limit = c + c * kMargin;
    if (candidates == kMaxCandidates && !overflow) {
      int kept = 0;
      for (int k = 0; k < candidates; ++k)
        if (candidate_cost[k] <= limit) candidate[kept] = candidate[k], candidate_cost[kept++] = candidate_cost[k];
      candidates = kept;
      overflow = kept == kMaxCandidates;
    }
    if (!overflow) candidate[candidates] = i, candidate_cost[candidates++] = c;
  }

  // Pass 2: the exact error (in the order of the definition above) of every entry within the margin.
  int best_index = -1, best_flip = -1;
  double best_error = 0;
  const auto score = [&](int i) {
    const uint8_t* lv = &grid.level[size_t(8 * i)];
    if (!fix_parity) {
      double e = 0;
      for (int j = 0; j < 8; ++j) e += keep[j][lv[j]];
      if (best_index < 0 || e < best_error) best_index = i, best_flip = -1, best_error = e;
      return;
    }
    for (int k = 0; k < 8; ++k) {
      double e = 0;
      for (int j = 0; j < 8; ++j) e += j == k ? flip[j][lv[j]] : keep[j][lv[j]];
      if (best_index < 0 || e < best_error) best_index = i, best_flip = k, best_error = e;
    }
  };
  if (!overflow) {
    for (int c = 0; c < candidates; ++c)
      if (candidate_cost[c] <= limit) score(candidate[c]);  // in increasing index order
  } else {
    for (int i = 0; i < n; ++i)
      if (entry_cost(i) <= limit) score(i);
  }
  if (best_index < 0) best_index = 0, best_flip = fix_parity ? 0 : -1;  // NaN or inf inputs
  const uint8_t signs = uint8_t(best_flip < 0 ? natural : natural ^ (1u << best_flip));
  store_code(type, block, g, best_index, signs);
}

}  // namespace llmpress::ggml_lattice_detail
