// IQ2_XXS, IQ2_XS and IQ2_S encoders, bit-exact with ggml_quantize_chunk (ggml-quants.c
// quantize_iq2_xxs / quantize_iq2_xs / quantize_iq2_s). Block layouts: ggml_iquant_blocks.cpp.
//
// A group (32 elements in IQ2_XXS, 16 otherwise) becomes |x| ~ scale * (2l + 1) with levels l in
// 0..2, in runs of 8 that must be points of the type's lattice (ggml_iquant_lattice.h), plus signs.
// Per group: weights, sign folding, a scan over candidate inverse scales that snaps every run onto
// the lattice, a refit of the scale, the grid indices. Per super-block: the group scales as 4-bit
// codes under one f16 scale. Every step keeps ggml's fp32 operations and their order.
#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstring>
#include <string>

#include "llmpress/core/error.h"
#include "llmpress/quant/ggml_block_bytes.h"
#include "llmpress/quant/ggml_block_search.h"
#include "llmpress/quant/ggml_blocks.h"
#include "llmpress/quant/ggml_iquant_lattice.h"
#include "llmpress/quant/ggml_iquant_tables.h"

namespace llmpress {
namespace {

using ggml_blocks::nearest_int;
using ggml_blocks::store_f16;
using ggml_blocks::store_u16;
using ggml_blocks::store_u32;
using ggml_lattice::Iq2Lattice;
using ggml_tables::grid_byte;

constexpr int QK = int(kSuperBlockElements);
constexpr int64_t kXxsBytes = 66, kXsBytes = 74, kSBytes = 82;
constexpr int kMaxQ = 3;                 // levels 0 .. kMaxQ - 1, odd values 1, 3, 5
constexpr float kIq2sMaxEps = 1e-8f;     // IQ2_S treats groups below this as zero (the others kGroupMaxEps)

enum class Kind { kXxs, kXs, kS };
constexpr int group_size(Kind kind) { return kind == Kind::kXxs ? 32 : 16; }


// ggml's MAX macro; unlike std::max it returns the second argument when either is NaN.
float ggml_max(float a, float b) { return a > b ? a : b; }

[[noreturn]] void fail(const char* what) { throw Error(std::string("ggml IQ2 encoder: ") + what); }

template <int N>
struct Group {
  float xval[N];    // |x|, except that IQ2_XXS/XS may leave one element per run negative (sign parity)
  float weight[N];  // least-squares weights
  float waux[N];    // sqrt(weight): the neighbour search's weights
  uint8_t signs[N / 8];
};

// ---- group stages --------------------------------------------------------------------------

float sum_squares(const float* x) {
  float s = 0;
  for (int i = 0; i < QK; ++i) s += x[i] * x[i];
  return s;
}

// w = importance * sqrt(sigma2 + x^2); without importance (IQ2_S only) 0.25 sigma2 + x^2.
template <int N>
void set_weights(Group<N>& g, const float* x, const float* importance, float sigma2) {
  for (int i = 0; i < N; ++i)
    g.weight[i] = importance ? importance[i] * std::sqrt(sigma2 + x[i] * x[i]) : 0.25f * sigma2 + x[i] * x[i];
  for (int i = 0; i < N; ++i) g.waux[i] = std::sqrt(g.weight[i]);
}

// Sign bits per run of 8. IQ2_XXS/XS store 7 bits (the 8th follows from even parity), so with an
// odd count of negatives the element of least w x^2 keeps its sign in xval instead.
template <int N>
void fold_signs(Group<N>& g, const float* x, bool even_parity) {
  for (int r = 0; r < N / 8; ++r) {
    const float* xr = x + 8 * r;
    float* xval = g.xval + 8 * r;
    int negatives = 0;
    uint8_t s = 0;
    for (int i = 0; i < 8; ++i) {
      if (xr[i] >= 0) {
        xval[i] = xr[i];
      } else {
        xval[i] = -xr[i];
        ++negatives;
        s |= uint8_t(1 << i);
      }
    }
    if (even_parity && negatives % 2) {
      const float* w = g.weight + 8 * r;
      int imin = 0;
      float min = w[0] * xr[0] * xr[0];
      for (int i = 1; i < 8; ++i) {
        const float ax = w[i] * xr[i] * xr[i];
        if (ax < min) {
          min = ax;
          imin = i;
        }
      }
      xval[imin] = -xval[imin];
      s ^= uint8_t(1 << imin);
    }
    g.signs[r] = even_parity ? s & 127 : s;
  }
}

template <int N>
float group_max(const Group<N>& g) {
  float max = g.xval[0];
  for (int i = 1; i < N; ++i) max = ggml_max(max, g.xval[i]);
  return max;
}

// The lattice point nearest to xval at `scale` (waux-weighted, first of equals); its levels go to L.
void best_neighbour(const Iq2Lattice& lat, const uint16_t* list, const float* xval, const float* waux, float scale,
                    int8_t* L) {
  float best_d2 = FLT_MAX;
  int best = -1;
  for (int j = 1; j <= list[0]; ++j) {
    const uint64_t entry = lat.grid[list[j]];
    float d2 = 0;
    for (int i = 0; i < 8; ++i) {
      const float diff = scale * float(int8_t(grid_byte(entry, i))) - xval[i];
      d2 += waux[i] * diff * diff;
    }
    if (d2 < best_d2) {
      best_d2 = d2;
      best = list[j];
    }
  }
  if (best < 0) fail("no finite distance to the lattice (non-finite input?)");
  for (int i = 0; i < 8; ++i) L[i] = int8_t((grid_byte(lat.grid[best], i) - 1) / 2);
}

// Levels of one run at inverse scale id; a point off the lattice is replaced by its best
// neighbour at `scale`. Returns whether the rounded point was on the lattice.
bool snap_run(const Iq2Lattice& lat, const float* xval, const float* waux, float id, float scale, int8_t* L) {
  int point = 0;
  for (int i = 0; i < 8; ++i) {
    const int l = std::max(0, std::min(kMaxQ - 1, nearest_int(0.5f * (id * xval[i] - 1))));
    L[i] = int8_t(l);
    point |= l << (2 * i);
  }
  if (lat.map[point] >= 0) return true;
  best_neighbour(lat, lat.neighbour_list(point), xval, waux, scale, L);
  return false;
}

template <int N>
void fit_sums(const Group<N>& g, const int8_t* L, float& sumqx, float& sumq2) {
  sumqx = 0;
  sumq2 = 0;
  for (int i = 0; i < N; ++i) {
    const float w = g.weight[i];
    const float q = float(2 * L[i] + 1);
    sumqx += w * g.xval[i] * q;
    sumq2 += w * q * q;
  }
}

// Inverse scales (5 + 0.1 k) / ref for |k| <= range, every run snapped; keeps the levels (and which
// runs were on the lattice) with the best sumqx^2 / sumq2, and their least-squares scale.
template <int N>
void scan_inverse_scales(const Iq2Lattice& lat, const Group<N>& g, float ref, int range, float& scale, int8_t* L,
                         bool* on_grid) {
  float best = 0;
  for (int k = -range; k <= range; ++k) {
    const float id = (2 * kMaxQ - 1 + float(k) * 0.1f) / ref;
    const float this_scale = 1 / id;
    int8_t trial[N];
    bool trial_on_grid[N / 8];
    for (int r = 0; r < N / 8; ++r)
      trial_on_grid[r] = snap_run(lat, g.xval + 8 * r, g.waux + 8 * r, id, this_scale, trial + 8 * r);
    float sumqx, sumq2;
    fit_sums(g, trial, sumqx, sumq2);
    if (sumq2 > 0 && sumqx * sumqx > best * sumq2) {
      scale = sumqx / sumq2;
      best = scale * sumqx;
      std::memcpy(L, trial, N);
      std::copy(trial_on_grid, trial_on_grid + N / 8, on_grid);
    }
  }
}

// Re-snaps the runs not marked on the lattice at the fitted scale, then refits the scale.
template <int N>
void refit(const Iq2Lattice& lat, const Group<N>& g, const bool* on_grid, float& scale, int8_t* L) {
  const float id = 1 / scale;
  for (int r = 0; r < N / 8; ++r)
    if (!on_grid[r]) snap_run(lat, g.xval + 8 * r, g.waux + 8 * r, id, scale, L + 8 * r);
  float sumqx, sumq2;
  fit_sums(g, L, sumqx, sumq2);
  if (sumq2 > 0) scale = sumqx / sumq2;
}

// IQ2_XXS: 13 inverse scales around make_qp_quants' estimate, then every run re-snapped. As in
// ggml, make_qp_quants' codes stay in L if neither step replaces them.
float search_group(const Iq2Lattice& lat, const Group<32>& g, float /*max*/, int8_t* L) {
  float scale = ggml_blocks::search_scale_codes(32, kMaxQ + 1, g.xval, reinterpret_cast<uint8_t*>(L), g.weight);
  bool on_grid[4];
  scan_inverse_scales(lat, g, scale * kMaxQ, 6, scale, L, on_grid);
  if (scale > 0) {
    const bool none_on_grid[4] = {false, false, false, false};
    refit(lat, g, none_on_grid, scale, L);
  }
  return scale;
}

// IQ2_XS, IQ2_S: 19 inverse scales around 5 / max, then the runs the best one left off the lattice.
float search_group(const Iq2Lattice& lat, const Group<16>& g, float max, int8_t* L) {
  float scale = max / (2 * kMaxQ - 1);
  bool on_grid[2] = {true, true};
  scan_inverse_scales(lat, g, max, 9, scale, L, on_grid);
  if ((!on_grid[0] || !on_grid[1]) && scale > 0) refit(lat, g, on_grid, scale, L);
  return scale;
}

int lattice_index(const Iq2Lattice& lat, const int8_t* L) {
  int point = 0;
  for (int i = 0; i < 8; ++i) point |= L[i] << (2 * i);
  const int index = lat.map[point];
  if (index < 0) fail("levels off the lattice (non-finite input or zero importance?)");
  return index;
}

// ---- super-block stages --------------------------------------------------------------------

template <Kind K>
struct SuperBlock {
  float scales[QK / group_size(K)];
  float max_scale = 0;
  uint16_t grid_index[QK / 8] = {};  // zero for all-zero groups, as ggml leaves them
  uint8_t signs[QK / 8] = {};
};

// Group scales, grid indices and signs of one super-block. `L` (group_size(K) levels) outlives
// the call on purpose: ggml keeps its level buffer across the groups of a row, and a group whose
// scan accepts no candidate (sumqx^2 underflows) encodes the levels left there.
template <Kind K>
SuperBlock<K> analyse(const Iq2Lattice& lat, const float* x, const float* importance, int8_t* L) {
  constexpr int N = group_size(K);
  SuperBlock<K> sb;
  const float sumx2 = sum_squares(x);
  const float sigma2 = (K == Kind::kS ? 2 * sumx2 : sumx2) / QK;
  for (int ib = 0; ib < QK / N; ++ib) {
    Group<N> g;
    set_weights(g, x + N * ib, importance ? importance + N * ib : nullptr, sigma2);
    fold_signs(g, x + N * ib, K != Kind::kS);
    const float max = group_max(g);
    if (max < (K == Kind::kS ? kIq2sMaxEps : ggml_blocks::kGroupMaxEps)) {
      sb.scales[ib] = 0;
      if (K != Kind::kS) std::memset(L, 0, N);
      continue;
    }
    float scale = search_group(lat, g, max, L);
    if (scale < 0) {  // a fit can go negative only through the parity-flipped element
      scale = -scale;
      for (uint8_t& s : g.signs) s = uint8_t(K == Kind::kS ? ~s : ~s & 127);
    }
    if (!(scale >= 0)) fail("non-finite group scale (non-finite input or zero importance?)");
    for (int r = 0; r < N / 8; ++r) {
      sb.grid_index[N / 8 * ib + r] = uint16_t(lattice_index(lat, L + 8 * r));
      sb.signs[N / 8 * ib + r] = g.signs[r];
    }
    sb.scales[ib] = scale;
    sb.max_scale = ggml_max(sb.max_scale, scale);
  }
  return sb;
}

// 4-bit group scale code under the super-block's inverse scale: scale ~ d (2 code + 1).
int scale_code(float id, float scale) { return std::max(0, std::min(15, nearest_int(0.5f * (id * scale - 1)))); }

void pack_iq2_xxs(const SuperBlock<Kind::kXxs>& sb, uint8_t* block) {
  std::memset(block, 0, kXxsBytes);
  if (sb.max_scale == 0) return;
  const float d = sb.max_scale / 31;
  store_f16(block, d);
  const float id = 1 / d;
  for (int ib = 0; ib < 8; ++ib) {
    uint8_t* q = block + 2 + 8 * ib;
    uint32_t aux = uint32_t(scale_code(id, sb.scales[ib])) << 28;
    for (int r = 0; r < 4; ++r) {
      q[r] = uint8_t(sb.grid_index[4 * ib + r]);
      aux |= uint32_t(sb.signs[4 * ib + r]) << (7 * r);
    }
    store_u32(q + 4, aux);
  }
}

void pack_iq2_xs(const SuperBlock<Kind::kXs>& sb, uint8_t* block) {
  std::memset(block, 0, kXsBytes);
  if (sb.max_scale == 0) return;
  const float d = sb.max_scale / 31;
  store_f16(block, d);
  const float id = 1 / d;
  for (int i = 0; i < 32; ++i) store_u16(block + 2 + 2 * i, uint16_t(sb.grid_index[i] | (sb.signs[i] << 9)));
  for (int ib = 0; ib < 16; ++ib) block[66 + ib / 2] |= uint8_t(scale_code(id, sb.scales[ib]) << (4 * (ib % 2)));
}

// Unlike the other two, IQ2_S keeps the group codes of a super-block whose scales are all zero.
void pack_iq2_s(const SuperBlock<Kind::kS>& sb, uint8_t* block) {
  std::memset(block, 0, kSBytes);
  for (int i = 0; i < 32; ++i) {
    block[2 + i] = uint8_t(sb.grid_index[i] & 255);
    block[66 + i / 4] |= uint8_t((sb.grid_index[i] >> 8) << (2 * (i % 4)));
    block[34 + i] = sb.signs[i];
  }
  if (sb.max_scale == 0) return;
  const float d = sb.max_scale / 31;
  store_f16(block, d * 0.9875f);  // stored slightly smaller; the codes use the unshrunk d
  const float id = 1 / d;
  for (int ib = 0; ib < 16; ++ib) block[74 + ib / 2] |= uint8_t(scale_code(id, sb.scales[ib]) << (4 * (ib % 2)));
}

}  // namespace

void quantize_iq2_xxs_weighted(const float* row, int64_t n, const float* importance, uint8_t* dst) {
  if (!importance) fail("IQ2_XXS needs importance (an imatrix)");
  const Iq2Lattice& lat = ggml_lattice::iq2_lattice(256);
  int8_t levels[32] = {};
  for (int64_t b = 0; b < n / QK; ++b)
    pack_iq2_xxs(analyse<Kind::kXxs>(lat, row + b * QK, importance + b * QK, levels), dst + b * kXxsBytes);
}

void quantize_iq2_xs_weighted(const float* row, int64_t n, const float* importance, uint8_t* dst) {
  if (!importance) fail("IQ2_XS needs importance (an imatrix)");
  const Iq2Lattice& lat = ggml_lattice::iq2_lattice(512);
  int8_t levels[16] = {};
  for (int64_t b = 0; b < n / QK; ++b)
    pack_iq2_xs(analyse<Kind::kXs>(lat, row + b * QK, importance + b * QK, levels), dst + b * kXsBytes);
}

void quantize_iq2_s_weighted(const float* row, int64_t n, const float* importance, uint8_t* dst) {
  const Iq2Lattice& lat = ggml_lattice::iq2_lattice(1024);
  int8_t levels[16] = {};
  for (int64_t b = 0; b < n / QK; ++b)
    pack_iq2_s(analyse<Kind::kS>(lat, row + b * QK, importance ? importance + b * QK : nullptr, levels),
               dst + b * kSBytes);
}

// ggml quantizes without importance row by row; the carried levels (see analyse) only matter in
// its underflow corner, where ggml's own buffer starts each row uninitialized.
void quantize_iq2_s(const float* src, int64_t count, uint8_t* dst) { quantize_iq2_s_weighted(src, count, nullptr, dst); }

}  // namespace llmpress
