#pragma once
// The search structures ggml's IQ2_XXS, IQ2_XS, IQ2_S, IQ1_S and IQ1_M encoders quantize against
// (ggml-quants.c iq2xs_init_impl, reproduced exactly). A point is eight levels l_k in 0..3, indexed
// as sum l_k << 2k. The grid keeps ggml's odd-valued form, byte k = 2 l_k + 1, so that distances
// are computed as ggml computes them. Plain C++.
#include <cstdint>

namespace llmpress::ggml_lattice {

// ggml's map size: covers every point whose levels are all <= 2 (index <= 0xAAAA), the only
// points the encoders look up.
constexpr int kIq2MapSize = 43692;

struct Iq2Lattice {
  const uint64_t* grid;        // grid_size entries, byte k = 2 l_k + 1 (int8), same order as the decoder grid
  const int* map;              // kIq2MapSize entries: point -> grid index, or -(offset of its neighbour list + 1)
  const uint16_t* neighbours;  // per off-grid point: a count, then that many grid indices (nearest first)
  int grid_size;
  int shells;                  // how many distinct nearest distances a neighbour list spans

  // The neighbour list (count first) of a point whose map entry is negative.
  const uint16_t* neighbour_list(int point) const { return neighbours - map[point] - 1; }
};

// grid_size 256 (IQ2_XXS), 512 (IQ2_XS), 1024 (IQ2_S) or 2048 (IQ1_S, IQ1_M); built on first use,
// thread-safe. Throws Error for any other size.
const Iq2Lattice& iq2_lattice(int grid_size);

}  // namespace llmpress::ggml_lattice
