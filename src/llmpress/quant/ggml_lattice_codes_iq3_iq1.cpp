// write_nearest_group for IQ3_XXS, IQ3_S, IQ1_S and IQ1_M: the exact weighted-nearest code of one
// group of 8 elements with the block's scales (and IQ1 delta signs) kept. Layouts as in
// ggml_iquant_blocks.cpp; every value is the decoder's own fp32 expression, errors are summed in double.
//
// Search. The error is a sum over elements, and each element's value depends only on its own grid
// level and sign, so per group we tabulate the error of every (element, level) once (8 levels for
// the IQ3 grids, 3 for IQ1) and sum the tables over pairs (IQ3) or quadruples (IQ1) of elements; a
// grid entry then costs two lookups.
//   IQ3_S: sign bits are free, so the best sign of each element is its target's sign, and the two
//     4-element halves are independent: best entry per half.
//   IQ3_XXS: the 8 signs must have an even count of minus signs. For a fixed entry the best signs of a
//     half with a given parity are the target signs (that parity) or the target signs with the one
//     cheapest element flipped (the other parity): every other pattern adds non-negative flip costs.
//     So per half we keep the best entry for each parity, and combine (even, even) or (odd, odd).
//   IQ1_S / IQ1_M: no signs, one 8-element entry of 2048 with values in {-1, 0, 1}; each half of 4
//     elements takes one of 81 patterns, tabulated per group.
#include <cmath>
#include <cstring>
#include <limits>
#include <string>

#include "llmpress/core/error.h"
#include "llmpress/quant/ggml_block_bytes.h"
#include "llmpress/quant/ggml_iquant_tables.h"
#include "llmpress/quant/ggml_lattice_codes_detail.h"

namespace llmpress::ggml_lattice_detail {
namespace {

using ggml_blocks::load_f16;
using ggml_blocks::load_u16;
using ggml_blocks::load_u32;
using ggml_blocks::store_u16;
using ggml_blocks::store_u32;
using ggml_tables::grid_byte;

constexpr float kIq1Delta = 0.125f;  // as the decoder
constexpr double kInf = std::numeric_limits<double>::infinity();


// A 4-element grid (IQ3) as level indices: the grid's distinct magnitudes (8 in both grids), and per
// entry the pair codes a + 8b of its elements (0, 1) and (2, 3).
template <int N>
struct QuadGrid {
  float level[8];
  uint8_t lo[N], hi[N];

  explicit QuadGrid(const uint32_t* grid) {
    int n = 0;
    uint8_t mags[8] = {};
    for (int i = 0; i < N; ++i)
      for (int j = 0; j < 4; ++j) {
        const uint8_t m = grid_byte(grid[i], j);
        int k = 0;
        while (k < n && mags[k] != m) ++k;
        if (k == n) {
          if (n == 8) throw Error("ggml IQ3 grid with more than 8 magnitudes");
          mags[n++] = m;
        }
      }
    for (int k = 0; k < 8; ++k) level[k] = float(k < n ? mags[k] : mags[0]);
    const auto index = [&](uint8_t m) {
      int k = 0;
      while (mags[k] != m) ++k;
      return k;
    };
    for (int i = 0; i < N; ++i) {
      lo[i] = uint8_t(index(grid_byte(grid[i], 0)) + 8 * index(grid_byte(grid[i], 1)));
      hi[i] = uint8_t(index(grid_byte(grid[i], 2)) + 8 * index(grid_byte(grid[i], 3)));
    }
  }
};

const QuadGrid<256>& iq3xxs_grid() {
  static const QuadGrid<256> grid(ggml_tables::kIq3xxsGrid);
  return grid;
}
const QuadGrid<512>& iq3s_grid() {
  static const QuadGrid<512> grid(ggml_tables::kIq3sGrid);
  return grid;
}

// The IQ1 grid (values -1, 0, 1) as base-3 codes (value + 1) of elements 0-3 and 4-7.
struct Iq1Grid {
  uint8_t lo[2048], hi[2048];
  Iq1Grid() {
    for (int i = 0; i < 2048; ++i) {
      int code[2] = {0, 0};
      for (int j = 7; j >= 0; --j) {
        const int v = int(int8_t(grid_byte(ggml_tables::kIq1sGrid[i], j)));
        if (v < -1 || v > 1) throw Error("ggml IQ1 grid value out of range");
        code[j / 4] = 3 * code[j / 4] + (v + 1);
      }
      lo[i] = uint8_t(code[0]);
      hi[i] = uint8_t(code[1]);
    }
  }
};

const Iq1Grid& iq1_grid() {
  static const Iq1Grid grid;
  return grid;
}

inline double sq_err(float t, float v, float w) {
  const double d = double(t) - double(v);
  return double(w) * (d * d);
}

// The best entry of one IQ3 half (4 elements) for each parity of its sign pattern (bit j: element j
// negative). With `parity_matters` false only the target signs' parity is searched (IQ3_S).
struct HalfBest {
  double cost[2];
  int entry[2];
  uint8_t signs[2];
  int natural_parity;  // of the target signs: the only parity searched when parity does not matter
};

template <int N>
HalfBest search_half(const QuadGrid<N>& grid, float scale, const float* t, const float* w, bool parity_matters) {
  double e[4][8], pen[4][8];  // target-sign error, extra error of the opposite sign
  uint8_t natural = 0;
  for (int j = 0; j < 4; ++j) {
    const float a = std::fabs(t[j]);
    if (t[j] < 0) natural |= uint8_t(1 << j);
    for (int k = 0; k < 8; ++k) {
      const float v = scale * grid.level[k];  // the decoder's scale * float(grid_byte)
      e[j][k] = sq_err(a, v, w[j]);
      pen[j][k] = sq_err(a, -v, w[j]) - e[j][k];
    }
  }
  const int np = __builtin_parity(natural);
  double pair_lo[64], pair_hi[64], flip_lo[64], flip_hi[64];
  uint8_t flip_lo_at[64], flip_hi_at[64];
  for (int a = 0; a < 8; ++a)
    for (int b = 0; b < 8; ++b) {
      const int p = a + 8 * b;
      pair_lo[p] = e[0][a] + e[1][b];
      pair_hi[p] = e[2][a] + e[3][b];
      flip_lo_at[p] = pen[1][b] < pen[0][a] ? 1 : 0;
      flip_lo[p] = flip_lo_at[p] ? pen[1][b] : pen[0][a];
      flip_hi_at[p] = pen[3][b] < pen[2][a] ? 3 : 2;
      flip_hi[p] = flip_hi_at[p] == 3 ? pen[3][b] : pen[2][a];
    }
  HalfBest best;
  best.natural_parity = np;
  best.cost[0] = best.cost[1] = kInf;
  best.entry[0] = best.entry[1] = 0;
  best.signs[np] = natural;
  best.signs[1 - np] = uint8_t(natural ^ 1);  // a pattern of that parity even if nothing is finite
  int flip_best = 0;
  for (int i = 0; i < N; ++i) {
    const double c0 = pair_lo[grid.lo[i]] + pair_hi[grid.hi[i]];
    if (c0 < best.cost[np]) best.cost[np] = c0, best.entry[np] = i;
    if (parity_matters) {
      const double fl = flip_lo[grid.lo[i]], fh = flip_hi[grid.hi[i]];
      const double c1 = c0 + (fh < fl ? fh : fl);
      if (c1 < best.cost[1 - np])
        best.cost[1 - np] = c1, best.entry[1 - np] = i,
        flip_best = fh < fl ? flip_hi_at[grid.hi[i]] : flip_lo_at[grid.lo[i]];
    }
  }
  if (parity_matters && best.cost[1 - np] < kInf) best.signs[1 - np] = uint8_t(natural ^ (1 << flip_best));
  return best;
}

void write_iq3_xxs(uint8_t* block, int g, const float* t, const float* w) {
  const int G = g / 4, l = g % 4;
  uint8_t* aux_at = block + 66 + 4 * G;
  const uint32_t aux = load_u32(aux_at);
  const float d = load_f16(block);
  const float db = d * (0.5f + float(aux >> 28)) * 0.5f;
  const QuadGrid<256>& grid = iq3xxs_grid();
  const HalfBest a = search_half(grid, db, t, w, true), b = search_half(grid, db, t + 4, w + 4, true);
  const int p = a.cost[1] + b.cost[1] < a.cost[0] + b.cost[0] ? 1 : 0;
  const uint8_t signs = uint8_t(a.signs[p] | (b.signs[p] << 4));  // even parity: bit 7 is implied
  block[2 + 8 * G + 2 * l] = uint8_t(a.entry[p]);
  block[3 + 8 * G + 2 * l] = uint8_t(b.entry[p]);
  const uint32_t mask = 127u << (7 * l);
  store_u32(aux_at, (aux & ~mask) | (uint32_t(signs & 127) << (7 * l)));
}

void write_iq3_s(uint8_t* block, int g, const float* t, const float* w) {
  const int G = g / 4, k = 2 * (g % 4);  // runs k, k + 1 of 4 elements
  const float d = load_f16(block);
  const int s = (block[106 + G / 2] >> (4 * (G % 2))) & 0xf;
  const float db = d * float(1 + 2 * s);
  const QuadGrid<512>& grid = iq3s_grid();
  const HalfBest a = search_half(grid, db, t, w, false), b = search_half(grid, db, t + 4, w + 4, false);
  const int pa = a.natural_parity, pb = b.natural_parity;
  const int ia = a.entry[pa], ib = b.entry[pb];
  block[2 + 8 * G + k] = uint8_t(ia);
  block[3 + 8 * G + k] = uint8_t(ib);
  uint8_t& qh = block[66 + G];
  qh = uint8_t((qh & ~(3 << k)) | ((ia >> 8) << k) | ((ib >> 8) << (k + 1)));
  block[74 + g] = uint8_t(a.signs[pa] | (b.signs[pb] << 4));
}

// The best IQ1 grid index for values scale * (grid + delta).
int search_iq1(float dl, float delta, const float* t, const float* w) {
  double e[8][3];
  for (int j = 0; j < 8; ++j)
    for (int v = 0; v < 3; ++v) e[j][v] = sq_err(t[j], dl * (float(v - 1) + delta), w[j]);
  double quad[2][81];
  for (int h = 0; h < 2; ++h) {
    const double(*q)[3] = e + 4 * h;
    for (int c = 0; c < 81; ++c)
      quad[h][c] = (q[0][c % 3] + q[1][c / 3 % 3]) + (q[2][c / 9 % 3] + q[3][c / 27]);
  }
  const Iq1Grid& grid = iq1_grid();
  double best = kInf;
  int best_i = 0;
  for (int i = 0; i < 2048; ++i) {
    const double c = quad[0][grid.lo[i]] + quad[1][grid.hi[i]];
    if (c < best) best = c, best_i = i;
  }
  return best_i;
}

void write_iq1_s(uint8_t* block, int g, const float* t, const float* w) {
  const int G = g / 4, l = g % 4;
  uint8_t* qh_at = block + 34 + 2 * G;
  const uint16_t qh = load_u16(qh_at);
  const float d = load_f16(block);
  const float dl = d * float(2 * ((qh >> 12) & 7) + 1);
  const float delta = (qh & 0x8000) ? -kIq1Delta : kIq1Delta;
  const int i = search_iq1(dl, delta, t, w);
  block[2 + g] = uint8_t(i);
  store_u16(qh_at, uint16_t((qh & ~(7 << (3 * l))) | ((i >> 8) << (3 * l))));
}

void write_iq1_m(uint8_t* block, int g, const float* t, const float* w) {
  const int G = g / 4, l = g % 4;
  uint16_t sc[4];
  for (int i = 0; i < 4; ++i) sc[i] = load_u16(block + 48 + 2 * i);
  const uint16_t d_bits =
      uint16_t((sc[0] >> 12) | ((sc[1] >> 8) & 0x00f0) | ((sc[2] >> 4) & 0x0f00) | (sc[3] & 0xf000));
  const float d = f16_to_f32(d_bits);
  const int shift = 6 * (G % 2) + 3 * (l / 2);
  const float dl = d * float(2 * ((sc[G / 2] >> shift) & 7) + 1);
  uint8_t& nibbles = block[32 + 2 * G + l / 2];
  const int ns = 4 * (l % 2);
  const float delta = ((nibbles >> ns) & 8) ? -kIq1Delta : kIq1Delta;
  const int i = search_iq1(dl, delta, t, w);
  block[4 * G + l] = uint8_t(i);
  nibbles = uint8_t((nibbles & ~(7 << ns)) | ((i >> 8) << ns));
}

}  // namespace

void write_nearest_group_iq3_iq1(TensorType type, uint8_t* block, int g, const float* target, const float* weight) {
  if (g < 0 || g >= 32) throw Error("write_nearest_group: group " + std::to_string(g) + " outside 0..31");
  switch (type) {
    case TensorType::IQ3_XXS: return write_iq3_xxs(block, g, target, weight);
    case TensorType::IQ3_S: return write_iq3_s(block, g, target, weight);
    case TensorType::IQ1_S: return write_iq1_s(block, g, target, weight);
    case TensorType::IQ1_M: return write_iq1_m(block, g, target, weight);
    default:
      throw Error("write_nearest_group_iq3_iq1: no IQ3/IQ1 lattice codes for ggml type " + tensor_type_name(type));
  }
}

}  // namespace llmpress::ggml_lattice_detail
