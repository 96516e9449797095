// Builds ggml's i-quant search lattices from the decoder grids (ggml_iquant_tables.cpp): ggml
// derives the same grids from its own compressed tables, so only the map and neighbour lists are
// computed here. Neighbour lists are ordered by (squared distance, grid index), which is the total
// order ggml's qsort comparator imposes, so they come out identical.
#include "llmpress/quant/ggml_iquant_lattice.h"

#include <string>
#include <vector>

#include "llmpress/core/error.h"
#include "llmpress/quant/ggml_iquant_tables.h"

namespace llmpress::ggml_lattice {
namespace {

using ggml_tables::grid_byte;

// The largest squared distance between two points: 8 elements, odd values 1..7.
constexpr int kMaxDistance = 8 * 6 * 6;

// Level 0..2 of one decoder grid byte: magnitudes 8, 25, 43 (IQ2) or int8 -1, 0, 1 (IQ1).
int level_of(uint8_t byte, bool ternary) {
  if (ternary) return int(int8_t(byte)) + 1;
  return byte == 8 ? 0 : byte == 25 ? 1 : 2;
}

// Decoder entry -> ggml's search form (byte k = 2 l_k + 1).
uint64_t odd_form(uint64_t entry, bool ternary) {
  uint64_t out = 0;
  for (int k = 0; k < 8; ++k) out |= uint64_t(2 * level_of(grid_byte(entry, k), ternary) + 1) << (8 * k);
  return out;
}

int point_of(uint64_t odd_entry) {
  int point = 0;
  for (int k = 0; k < 8; ++k) point |= ((grid_byte(odd_entry, k) - 1) / 2) << (2 * k);
  return point;
}

// Appends `point`'s neighbour list: every grid index whose squared distance is among the `shells`
// smallest distinct distances, by (distance, index).
void append_neighbours(const std::vector<uint64_t>& grid, int point, int shells, std::vector<int>& d2,
                       std::vector<uint16_t>& out) {
  int pos[8];
  for (int k = 0; k < 8; ++k) pos[k] = 2 * ((point >> (2 * k)) & 3) + 1;
  bool present[kMaxDistance + 1] = {};
  for (size_t j = 0; j < grid.size(); ++j) {
    int d = 0;
    for (int k = 0; k < 8; ++k) {
      const int diff = int(grid_byte(grid[j], k)) - pos[k];
      d += diff * diff;
    }
    d2[j] = d;
    present[d] = true;
  }
  const size_t count_at = out.size();
  out.push_back(0);
  int taken = 0;
  for (int d = 0; d <= kMaxDistance && taken < shells; ++d) {
    if (!present[d]) continue;
    ++taken;
    for (size_t j = 0; j < grid.size(); ++j)
      if (d2[j] == d) out.push_back(uint16_t(j));
  }
  out[count_at] = uint16_t(out.size() - count_at - 1);
}

struct Store {
  std::vector<uint64_t> grid;
  std::vector<int> map;
  std::vector<uint16_t> neighbours;
  Iq2Lattice view;

  Store(const Store&) = delete;
  Store& operator=(const Store&) = delete;
  Store(const uint64_t* decoder_grid, int grid_size, bool ternary, int shells) : map(kIq2MapSize, -1) {
    for (int i = 0; i < grid_size; ++i) grid.push_back(odd_form(decoder_grid[i], ternary));
    for (int i = 0; i < grid_size; ++i) map[point_of(grid[i])] = i;
    std::vector<int> d2(grid.size());
    for (int point = 0; point < kIq2MapSize; ++point) {
      if (map[point] >= 0) continue;
      map[point] = -int(neighbours.size()) - 1;
      append_neighbours(grid, point, shells, d2, neighbours);
    }
    view = Iq2Lattice{grid.data(), map.data(), neighbours.data(), grid_size, shells};
  }
};

}  // namespace

const Iq2Lattice& iq2_lattice(int grid_size) {
  // ggml's nwant: IQ2_S keeps only the nearest shell, the IQ1 grid three.
  switch (grid_size) {
    case 256: {
      static const Store store(ggml_tables::kIq2xxsGrid, 256, false, 2);
      return store.view;
    }
    case 512: {
      static const Store store(ggml_tables::kIq2xsGrid, 512, false, 2);
      return store.view;
    }
    case 1024: {
      static const Store store(ggml_tables::kIq2sGrid, 1024, false, 1);
      return store.view;
    }
    case 2048: {
      static const Store store(ggml_tables::kIq1sGrid, 2048, true, 3);
      return store.view;
    }
    default: throw Error("no ggml i-quant lattice with " + std::to_string(grid_size) + " grid points");
  }
}

}  // namespace llmpress::ggml_lattice
