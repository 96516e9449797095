// IQ1_S and IQ1_M encoders, byte-identical to ggml_quantize_chunk. Each element becomes one of three
// levels {-1, 0, 1} + delta, delta = +-0.125 chosen per group (IQ1_S: 32 elements; IQ1_M: each half
// of a 16-element group), times a group scale. Per group: sort the elements, try every split of the
// sorted order into the three levels (the exact weighted least-squares optimum), snap each run of 8
// levels to the 2048-entry grid (nearest allowed pattern by weighted error), refit the scale. The
// group scales are then coded as 3-bit odd multiples (2s + 1) of a super-block scale.
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

namespace llmpress {
namespace {

using ggml_blocks::nearest_int;
using ggml_blocks::store_f16;
using ggml_blocks::store_u16;
using ggml_lattice::Iq2Lattice;

constexpr int QK = int(kSuperBlockElements);
constexpr int kRun = 8;             // elements per grid entry
constexpr float kDelta = 0.125f;    // IQ1S_DELTA = IQ1M_DELTA
constexpr float kIq1sMaxEps = 1e-12f;  // GROUP_MAX_EPS_IQ1_S: smaller groups are stored as zero
constexpr float kIq1mMaxEps = 1e-7f;   // GROUP_MAX_EPS_IQ1_M

// The three levels for code 0, 1, 2 with delta +0.125 and -0.125.
constexpr float kPlus[3] = {-1 + kDelta, kDelta, 1 + kDelta};
constexpr float kMinus[3] = {-1 - kDelta, -kDelta, 1 - kDelta};

const Iq2Lattice& lattice() { return ggml_lattice::iq2_lattice(2048); }

// Code (0, 1, 2) of element j of a lattice grid entry (stored as 2 * code + 1).
int grid_code(uint64_t entry, int j) { return (int8_t(entry >> (8 * j)) - 1) / 2; }


[[noreturn]] void no_fit(const char* type) {
  throw Error(std::string(type) + ": a group has no usable fit (non-finite values or all-zero importance)");
}

// 2 * mean square of the super-block: the importance weights' floor.
float super_block_sigma2(const float* x) {
  float sumx2 = 0;
  for (int i = 0; i < QK; ++i) sumx2 += x[i] * x[i];
  return 2 * sumx2 / QK;
}

void group_weights(const float* x, const float* importance, float sigma2, int n, float* w) {
  for (int i = 0; i < n; ++i) w[i] = importance ? importance[i] * std::sqrt(sigma2 + x[i] * x[i]) : x[i] * x[i];
}

float max_abs(const float* x, int n) {
  float m = std::fabs(x[0]);
  for (int i = 1; i < n; ++i) m = std::max(m, std::fabs(x[i]));
  return m;
}

// Element indices in ascending order of value. ggml uses glibc qsort, which for arrays this small is
// a stable merge sort, so equal values keep their index order; the split search depends on it.
void sorted_order(const float* x, int n, int* order) {
  for (int i = 0; i < n; ++i) order[i] = i;
  std::stable_sort(order, order + n, [x](int a, int b) { return x[a] < x[b]; });
}

// Codes 0 / 1 / 2 for the sorted positions below i1, in [i1, i2), from i2 on.
void split_codes(const int* order, int n, int i1, int i2, int8_t* codes) {
  for (int j = 0; j < n; ++j) codes[order[j]] = int8_t(j < i1 ? 0 : j < i2 ? 1 : 2);
}

// ggml keeps the first candidate that strictly improves (sum w q x)^2 / (sum w q^2).
bool improves(float sumqx, float sumq2, float best_score) { return sumq2 > 0 && sumqx * sumqx > best_score * sumq2; }

// The grid entry allowed next to an off-grid pattern with the least weighted error at `scale`.
int best_neighbour(const uint16_t* neighbours, const float* x, const float* w, float scale, const float* levels) {
  const uint64_t* grid = lattice().grid;
  float best = FLT_MAX;
  int best_index = -1;
  for (int n = 1; n <= neighbours[0]; ++n) {
    float d2 = 0;
    for (int j = 0; j < kRun; ++j) {
      const float diff = scale * levels[grid_code(grid[neighbours[n]], j)] - x[j];
      d2 += w[j] * diff * diff;
    }
    if (d2 < best) {
      best = d2;
      best_index = neighbours[n];
    }
  }
  return best_index;
}

// Grid index of a run of 8 codes: its own entry when the pattern is allowed, else the best neighbour.
int snap_run(const int8_t* codes, const float* x, const float* w, float scale, const float* levels, bool& on_grid,
             const char* type) {
  const Iq2Lattice& lat = lattice();
  int key = 0;
  for (int j = 0; j < kRun; ++j) key |= codes[j] << (2 * j);
  const int index = lat.map[key];
  if (index >= 0) return index;
  on_grid = false;
  const int neighbour = best_neighbour(lat.neighbour_list(key), x, w, scale, levels);
  if (neighbour < 0) no_fit(type);
  return neighbour;
}

// Least-squares scale of the snapped runs; `scale` unchanged unless both sums are positive.
float refit_scale(const float* x, const float* w, const int* indices, const float* const* run_levels, int runs,
                  float scale) {
  float sumqx = 0, sumq2 = 0;
  for (int r = 0; r < runs; ++r) {
    const uint64_t entry = lattice().grid[indices[r]];
    for (int j = 0; j < kRun; ++j) {
      const int i = kRun * r + j;
      const float q = run_levels[r][grid_code(entry, j)];
      sumqx += w[i] * q * x[i];
      sumq2 += w[i] * q * q;
    }
  }
  return sumqx > 0 && sumq2 > 0 ? sumqx / sumq2 : scale;
}

// 3-bit code s of a group scale, stored as d * (2s + 1).
int odd_scale_code(float id, float scale) { return std::max(0, std::min(7, nearest_int(0.5f * (id * scale - 1)))); }

// ---- IQ1_S: 8 groups of 32, one delta sign per group ----

constexpr int kSGroup = 32;

struct SGroupFit {
  float scale;
  int shift;  // +1: levels kPlus, -1: kMinus
};

// Best split and delta sign of one group, from prefix sums over the sorted order.
SGroupFit search_iq1s_group(const float* x, const float* w, const int* order, int8_t* codes) {
  float sumx[kSGroup + 1], sumw[kSGroup + 1];
  sumx[0] = sumw[0] = 0;
  for (int j = 0; j < kSGroup; ++j) {
    const int i = order[j];
    sumx[j + 1] = sumx[j] + w[i] * x[i];
    sumw[j + 1] = sumw[j] + w[i];
  }
  float best_score = -FLT_MIN, scale = 0;
  int best_i1 = -1, best_i2 = -1, best_shift = 0;
  for (int i1 = 0; i1 <= kSGroup; ++i1) {
    for (int i2 = i1; i2 <= kSGroup; ++i2) {
      const float sx[3] = {sumx[i1], sumx[i2] - sumx[i1], sumx[kSGroup] - sumx[i2]};
      const float sw[3] = {sumw[i1], sumw[i2] - sumw[i1], sumw[kSGroup] - sumw[i2]};
      for (int shift : {1, -1}) {
        const float* v = shift == 1 ? kPlus : kMinus;
        const float sumqx = sx[0] * v[0] + sx[1] * v[1] + sx[2] * v[2];
        const float sumq2 = sw[0] * v[0] * v[0] + sw[1] * v[1] * v[1] + sw[2] * v[2] * v[2];
        if (improves(sumqx, sumq2, best_score)) {
          scale = sumqx / sumq2;
          best_score = scale * sumqx;
          best_i1 = i1, best_i2 = i2, best_shift = shift;
        }
      }
    }
  }
  if (best_i1 < 0) no_fit("IQ1_S");
  split_codes(order, kSGroup, best_i1, best_i2, codes);
  if (scale < 0) {  // same fit with the levels mirrored
    for (int i = 0; i < kSGroup; ++i) codes[i] = int8_t(2 - codes[i]);
    scale = -scale;
    best_shift = -best_shift;
  }
  return {scale, best_shift};
}

// IQ1_S (50 bytes): d f16 @0, grid index low bytes [32] @2, per group a LE u16 @34+2g (index bits
// 8-10 of run r in bits 3r..3r+2, scale code in bits 12-14, bit 15 set for delta -0.125).
// `shifts` carries each group position's delta sign across the super-blocks of one call: ggml leaves
// it unset for an all-zero group yet still stores it, so such a group repeats the sign last chosen at
// its position. Before any is chosen ggml's buffer is uninitialized; callers start from the positive
// delta, which is what a zero-filled buffer gives.
void encode_iq1_s_super_block(const float* x, const float* importance, int8_t* shifts, uint8_t* dst) {
  constexpr int kGroups = QK / kSGroup;
  std::memset(dst, 0, 50);
  const float sigma2 = super_block_sigma2(x);
  float scales[kGroups];
  uint16_t qh[kGroups] = {};
  float max_scale = 0;
  for (int g = 0; g < kGroups; ++g) {
    const float* xg = x + kSGroup * g;
    float w[kSGroup];
    group_weights(xg, importance + kSGroup * g, sigma2, kSGroup, w);
    if (max_abs(xg, kSGroup) < kIq1sMaxEps) {
      scales[g] = 0;
      continue;
    }
    int order[kSGroup];
    int8_t codes[kSGroup];
    sorted_order(xg, kSGroup, order);
    SGroupFit fit = search_iq1s_group(xg, w, order, codes);
    const float* levels = fit.shift == 1 ? kPlus : kMinus;
    int indices[kSGroup / kRun];
    bool on_grid = true;
    for (int r = 0; r < kSGroup / kRun; ++r)
      indices[r] = snap_run(codes + kRun * r, xg + kRun * r, w + kRun * r, fit.scale, levels, on_grid, "IQ1_S");
    if (!on_grid) {
      const float* run_levels[4] = {levels, levels, levels, levels};
      fit.scale = refit_scale(xg, w, indices, run_levels, kSGroup / kRun, fit.scale);
    }
    for (int r = 0; r < kSGroup / kRun; ++r) {
      dst[2 + 4 * g + r] = uint8_t(indices[r] & 255);
      qh[g] |= uint16_t((indices[r] >> 8) << (3 * r));
    }
    scales[g] = fit.scale;
    shifts[g] = int8_t(fit.shift);
    max_scale = std::max(max_scale, fit.scale);
  }
  if (max_scale != 0) {
    const float d = max_scale / 15;
    store_f16(dst, d * 1.125f);  // ggml's empirical enlargement
    const float id = 1 / d;
    for (int g = 0; g < kGroups; ++g) {
      const int s = odd_scale_code(id, scales[g]) | (shifts[g] == -1 ? 8 : 0);
      qh[g] |= uint16_t(s << 12);
    }
  }
  for (int g = 0; g < kGroups; ++g) store_u16(dst + 34 + 2 * g, qh[g]);
}

// ---- IQ1_M: 16 groups of 16, one delta sign per half group ----

constexpr int kMGroup = 16;

// Delta-sign combination k (0..3): bit 1 set means kMinus for the first half, bit 0 for the second.
const float* half_levels(int k, int half) { return ((half == 0 ? k >> 1 : k) & 1) ? kMinus : kPlus; }

struct MGroupFit {
  float scale;
  int k;
};

// Best split and delta-sign combination of one group. ggml sums each candidate's terms afresh in
// sorted order (below i1, then [i1, i2), then from i2 on); the partial sums before i1 and before i2
// are shared between candidates, so only the tail is re-added, in the same order, giving the same floats.
MGroupFit search_iq1m_group(const float* x, const float* w, const int* order, int8_t* codes) {
  float tqx[3][kMGroup][4], tq2[3][kMGroup][4];  // terms of level c at sorted position j, combination k
  for (int j = 0; j < kMGroup; ++j) {
    const int i = order[j];
    for (int k = 0; k < 4; ++k) {
      const float* v = half_levels(k, i < kMGroup / 2 ? 0 : 1);
      for (int c = 0; c < 3; ++c) {
        tqx[c][j][k] = w[i] * v[c] * x[i];
        tq2[c][j][k] = w[i] * v[c] * v[c];
      }
    }
  }
  const auto add = [&](float* qx, float* q2, int c, int j) {
    for (int k = 0; k < 4; ++k) qx[k] += tqx[c][j][k], q2[k] += tq2[c][j][k];
  };
  float best_score = -FLT_MIN, scale = 0;
  int best_i1 = -1, best_i2 = -1, best_k = -1;
  float head_qx[4] = {}, head_q2[4] = {};
  for (int i1 = 0; i1 <= kMGroup; ++i1) {
    float mid_qx[4], mid_q2[4];
    std::copy(head_qx, head_qx + 4, mid_qx);
    std::copy(head_q2, head_q2 + 4, mid_q2);
    for (int i2 = i1; i2 <= kMGroup; ++i2) {
      float sumqx[4], sumq2[4];
      std::copy(mid_qx, mid_qx + 4, sumqx);
      std::copy(mid_q2, mid_q2 + 4, sumq2);
      for (int j = i2; j < kMGroup; ++j) add(sumqx, sumq2, 2, j);
      for (int k = 0; k < 4; ++k) {
        if (improves(sumqx[k], sumq2[k], best_score)) {
          scale = sumqx[k] / sumq2[k];
          best_score = scale * sumqx[k];
          best_i1 = i1, best_i2 = i2, best_k = k;
        }
      }
      if (i2 < kMGroup) add(mid_qx, mid_q2, 1, i2);
    }
    if (i1 < kMGroup) add(head_qx, head_q2, 0, i1);
  }
  if (best_i1 < 0) no_fit("IQ1_M");
  split_codes(order, kMGroup, best_i1, best_i2, codes);
  if (scale < 0) {  // mirrored levels: both delta signs flip
    for (int i = 0; i < kMGroup; ++i) codes[i] = int8_t(2 - codes[i]);
    scale = -scale;
    best_k = 3 - best_k;
  }
  return {scale, best_k};
}

// IQ1_M (56 bytes): grid index low bytes [32] @0, qh[16] @32 (per group: low nibble run 0, high
// nibble run 1; index bits 8-10, bit 3 set for delta -0.125), four LE u16 @48 with the 3-bit group
// scale codes in bits 0-11 and, in bits 12-15, a nibble each of the f16 super-block scale.
// `shifts` (delta-sign combinations) carries across super-blocks as in IQ1_S; it also enters the
// super-block scale refit through the all-zero groups' levels.
void encode_iq1_m_super_block(const float* x, const float* importance, int8_t* shifts, uint8_t* dst) {
  constexpr int kGroups = QK / kMGroup;
  constexpr uint8_t kSignBits[4] = {0x00, 0x80, 0x08, 0x88};
  std::memset(dst, 0, 56);
  const float sigma2 = super_block_sigma2(x);
  float w[QK];
  float scales[kGroups];
  int indices[kGroups][2] = {};
  float max_scale = 0;
  for (int g = 0; g < kGroups; ++g) {
    const float* xg = x + kMGroup * g;
    float* wg = w + kMGroup * g;
    group_weights(xg, importance ? importance + kMGroup * g : nullptr, sigma2, kMGroup, wg);
    if (max_abs(xg, kMGroup) < kIq1mMaxEps) {
      scales[g] = 0;
      continue;
    }
    int order[kMGroup];
    int8_t codes[kMGroup];
    sorted_order(xg, kMGroup, order);
    MGroupFit fit = search_iq1m_group(xg, wg, order, codes);
    const float* run_levels[2] = {half_levels(fit.k, 0), half_levels(fit.k, 1)};
    bool on_grid = true;
    for (int r = 0; r < 2; ++r)
      indices[g][r] =
          snap_run(codes + kRun * r, xg + kRun * r, wg + kRun * r, fit.scale, run_levels[r], on_grid, "IQ1_M");
    if (!on_grid) fit.scale = refit_scale(xg, wg, indices[g], run_levels, 2, fit.scale);
    scales[g] = fit.scale;
    shifts[g] = int8_t(fit.k);
    max_scale = std::max(max_scale, fit.scale);
  }
  for (int g = 0; g < kGroups; ++g) {
    dst[2 * g] = uint8_t(indices[g][0] & 255);
    dst[2 * g + 1] = uint8_t(indices[g][1] & 255);
    dst[32 + g] = uint8_t((indices[g][0] >> 8) | ((indices[g][1] >> 8) << 4));
  }
  if (max_scale == 0) return;
  uint16_t sc[4] = {};
  float d = max_scale / 15;
  const float id = 1 / d;
  // Refit the super-block scale to the coded group scales, over all groups (all-zero ones included).
  float sumqx = 0, sumq2 = 0;
  for (int g = 0; g < kGroups; ++g) {
    const int s = odd_scale_code(id, scales[g]);
    sc[g / 4] |= uint16_t(s << (3 * (g % 4)));
    dst[32 + g] |= kSignBits[shifts[g]];
    for (int r = 0; r < 2; ++r) {
      const float* levels = half_levels(shifts[g], r);
      const uint64_t entry = lattice().grid[indices[g][r]];
      for (int j = 0; j < kRun; ++j) {
        const int i = kMGroup * g + kRun * r + j;
        const float q = levels[grid_code(entry, j)] * float(2 * s + 1);
        sumqx += w[i] * q * x[i];
        sumq2 += w[i] * q * q;
      }
    }
  }
  if (sumq2 > 0) d = sumqx / sumq2;
  const uint16_t dh = f32_to_f16(d * 1.1125f);  // ggml's empirical enlargement
  sc[0] |= uint16_t((dh & 0x000f) << 12);
  sc[1] |= uint16_t((dh & 0x00f0) << 8);
  sc[2] |= uint16_t((dh & 0x0f00) << 4);
  sc[3] |= uint16_t(dh & 0xf000);
  for (int i = 0; i < 4; ++i) store_u16(dst + 48 + 2 * i, sc[i]);
}

void encode_iq1_m_blocks(const float* x, int64_t blocks, const float* importance, uint8_t* dst) {
  int8_t shifts[QK / kMGroup] = {};  // combination 0: delta +0.125 in both halves
  for (int64_t b = 0; b < blocks; ++b)
    encode_iq1_m_super_block(x + b * QK, importance ? importance + b * QK : nullptr, shifts, dst + b * 56);
}

}  // namespace

void quantize_iq1_s_weighted(const float* row, int64_t n, const float* importance, uint8_t* dst) {
  if (!importance) throw Error("IQ1_S needs an importance matrix");
  int8_t shifts[QK / kSGroup];
  std::fill(shifts, shifts + QK / kSGroup, int8_t(1));  // delta +0.125
  for (int64_t b = 0; b < n / QK; ++b)
    encode_iq1_s_super_block(row + b * QK, importance + b * QK, shifts, dst + b * 50);
}

void quantize_iq1_m(const float* src, int64_t count, uint8_t* dst) {
  encode_iq1_m_blocks(src, count / QK, nullptr, dst);
}

void quantize_iq1_m_weighted(const float* row, int64_t n, const float* importance, uint8_t* dst) {
  encode_iq1_m_blocks(row, n / QK, importance, dst);
}

}  // namespace llmpress
