#pragma once
// The per-(sub-)block scale searches shared by ggml's quantizers (formats.md 2.4, 2.7, 2.8).
// Bit-exactness with ggml depends on doing the same fp32 operations in the same order, so
// each helper keeps ggml's evaluation order (sums accumulated left to right, products
// grouped as (w*x)*l) and ggml's integer conversions (codes wrap through int8/uint8).
// Internal to src/llmpress/quant; plain C++.
#include <cstdint>
#include <cstring>

namespace llmpress::ggml_blocks {

// Sub-blocks whose largest |x| is below this are treated as all zero.
constexpr float kGroupMaxEps = 1e-15f;

// Round half to even via the fp32 mantissa (adding 1.5*2^23); valid for |x| < 2^22.
inline int nearest_int(float x) {
  const float shifted = x + 12582912.0f;
  int32_t bits;
  std::memcpy(&bits, &shifted, 4);
  return (bits & 0x007fffff) - 0x00400000;
}

// Symmetric codes l in [-nmax, nmax-1] (stored l + nmax) for value s*l, maximizing
// (sum w x l)^2 / (sum w l^2) over 19 candidate inverse scales. `weights` null means w = x^2.
// Returns s (0 and all codes 0 for an all-zero block). ggml: make_qx_quants(rmse_type = 1).
float search_symmetric(int n, int nmax, const float* x, int8_t* codes, const float* weights);

// Q3_K's reference search: symmetric codes with w = x^2, refined by up to 5 passes of
// per-element coordinate descent. Codes stored l + nmax. ggml: make_q3_quants(do_rmse = true).
float search_symmetric_refined(int n, int nmax, const float* x, int8_t* codes);

// Affine codes L in [0, nmax] for value s*L - min (min >= 0 returned in *min_out), weighted
// least squares (or least absolute deviation when use_mad) over nstep+1 candidate scales
// (nmax + rmin + rdelta*k)/(max - min). `weights` null means w = x^2.
// ggml: make_qkx2_quants / make_qkx3_quants (identical for the arguments ggml uses).
float search_affine(int n, int nmax, const float* x, const float* weights, uint8_t* codes, float* min_out,
                    float rmin, float rdelta, int nstep, bool use_mad);

// Codes L in [0, nmax] for non-negative values (sub-block scales or mins) with a weighted
// least-squares scale: 9 candidate scales, then up to 5 refinement passes. ggml: make_qp_quants.
float search_scale_codes(int n, int nmax, const float* x, uint8_t* codes, const float* weights);

}  // namespace llmpress::ggml_blocks
