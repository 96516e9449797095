#include "llmpress/quant/gptq_ggml.h"

#include <cstdio>
#include <cstring>
#include <optional>
#include <set>
#include <vector>

#include "llmpress/core/error.h"
#include "llmpress/core/log.h"
#include "llmpress/model/sparse_weight.h"
#include "llmpress/export/ggml_quantize.h"
#include "llmpress/quant/ggml_codes.h"
#include "llmpress/quant/ggml_lattice_codes.h"
#include "llmpress/quant/hessian_factor.h"

namespace llmpress {

namespace {

// The encoded bytes of a whole matrix, with each row's blocks fitted one block-column at a time.
class BlockFitter {
 public:
  BlockFitter(TensorType type, int64_t rows, int64_t cols)
      : enc_(ggml_encoding(type)),
        rows_(rows),
        row_bytes_(int64_t(ggml_encoded_bytes(type, cols, 1))),
        bytes_(at::zeros({rows, row_bytes_}, at::kByte)) {}

  // Encodes block `block` of every row from part [rows, block_elements] (CPU float32): its header
  // (scales, mins) is what the later rounding keeps.
  void fit_headers(int64_t block, const at::Tensor& part, const float* importance) {
    const int64_t n = enc_.block_elements;
    const float* src = part.data_ptr<float>();
    for (int64_t r = 0; r < rows_; ++r) {
      uint8_t* dst = block_at(r, block);
      if (enc_.encode_weighted && importance) enc_.encode_weighted(src + r * n, n, importance, dst);
      else enc_.encode(src + r * n, n, dst);
    }
  }

  // fit_headers, then each element's grid (scale, offset), both [rows, block_elements].
  std::pair<at::Tensor, at::Tensor> fit(int64_t block, const at::Tensor& part, const float* importance) {
    fit_headers(block, part, importance);
    const int64_t n = enc_.block_elements;
    at::Tensor scale = at::empty({rows_, n}, at::kFloat), offset = at::empty({rows_, n}, at::kFloat);
    for (int64_t r = 0; r < rows_; ++r)
      block_affine_grid(enc_.type, block_at(r, block), scale.data_ptr<float>() + r * n, offset.data_ptr<float>() + r * n);
    return {scale, offset};
  }

  // Lattice types: re-codes the 8-column group starting at column k of every row to the lattice point
  // nearest to target [rows, 8] (CPU float32) under the column weights, and returns the values it
  // decodes to, [rows, 8].
  at::Tensor recode_group(int64_t k, const at::Tensor& target, const float* weight) {
    const int64_t n = enc_.block_elements, g = (k % n) / kLatticeGroupElements;
    at::Tensor values = at::empty({rows_, kLatticeGroupElements}, at::kFloat);
    std::vector<float> decoded(static_cast<size_t>(n));
    const float* t = target.data_ptr<float>();
    for (int64_t r = 0; r < rows_; ++r) {
      uint8_t* dst = block_at(r, k / n);
      write_nearest_group(enc_.type, dst, int(g), t + r * kLatticeGroupElements, weight);
      decode_to_f32(enc_.type, dst, n, decoded.data());
      std::memcpy(values.data_ptr<float>() + r * kLatticeGroupElements, decoded.data() + g * kLatticeGroupElements,
                  sizeof(float) * kLatticeGroupElements);
    }
    return values;
  }

  at::Tensor bytes() const { return bytes_; }

  // Stores the chosen codes ([rows, cols] int32) into the fitted blocks.
  at::Tensor pack(const at::Tensor& codes) {
    const int64_t n = enc_.block_elements, blocks = codes.size(1) / n;
    const int32_t* c = codes.data_ptr<int32_t>();
    for (int64_t r = 0; r < rows_; ++r)
      for (int64_t b = 0; b < blocks; ++b)
        for (int64_t e = 0; e < n; ++e)
          write_block_code(enc_.type, block_at(r, b), int(e), c[r * codes.size(1) + b * n + e]);
    return bytes_;
  }

 private:
  uint8_t* block_at(int64_t row, int64_t block) {
    return bytes_.data_ptr<uint8_t>() + row * row_bytes_ + block * enc_.block_bytes;
  }

  const GgmlEncoding& enc_;
  int64_t rows_, row_bytes_;
  at::Tensor bytes_;
};

// The code whose level is nearest to x (x in units of the element's scale), and the level of a code.
class NearestCode {
 public:
  NearestCode(TensorType type, const at::Device& device) : range_(block_code_range(type)) {
    if (block_levels_uniform(type)) return;
    const std::vector<float> levels = block_code_levels(type);
    std::vector<float> midpoints;
    for (size_t k = 0; k + 1 < levels.size(); ++k) midpoints.push_back(0.5f * (levels[k] + levels[k + 1]));
    levels_ = at::tensor(levels).to(device);
    midpoints_ = at::tensor(midpoints).to(device);
  }
  at::Tensor code(const at::Tensor& x) const {
    if (!levels_.defined()) return at::clamp(at::round(x), range_.min_code, range_.max_code);
    // Midpoints at or below x (a tie goes to the upper level, as ggml's best_index_int8).
    return at::bucketize(x, midpoints_, /*out_int32=*/false, /*right=*/true).to(x.scalar_type());
  }
  at::Tensor level(const at::Tensor& code) const {
    if (!levels_.defined()) return code;
    return levels_.index_select(0, code.flatten().to(at::kLong)).view_as(code);
  }

 private:
  BlockCodeRange range_;
  at::Tensor levels_, midpoints_;
};

}  // namespace

std::shared_ptr<GgmlWeight> gptq_ggml_quantize(const at::Tensor& weight, const at::Tensor& hessian, TensorType type,
                                               const GptqOptions& options, const std::string& name,
                                               const at::Tensor& removed_mask) {
  const GgmlEncoding& enc = ggml_encoding(type);
  if (weight.dim() != 2) throw Error("gptq: weight must be 2-D");
  const int64_t rows = weight.size(0), cols = weight.size(1), block = enc.block_elements;
  if (!enc.quantized) return GgmlWeight::encode(weight, type);
  const bool masked = removed_mask.defined();
  if (cols % block != 0)
    throw Error("gptq: " + name + ": rows of " + std::to_string(cols) + " are not a whole number of " + enc.name +
                " blocks");
  if (hessian.dim() != 2 || hessian.size(0) != cols || hessian.size(1) != cols)
    throw Error("gptq: " + name + ": Hessian must be [" + std::to_string(cols) + ", " + std::to_string(cols) + "]");
  const auto device = weight.device();
  at::Tensor w = weight.to(at::kFloat).clone();
  at::Tensor h = hessian.to(device, at::kDouble).clone();
  if (!at::isfinite(h).all().item<bool>()) throw Error("gptq: " + name + ": the Hessian contains NaN or Inf");
  const at::Tensor dead = h.diagonal() == 0;  // inputs never active: see gptq_quantize
  h.diagonal().masked_fill_(dead, 1.0);
  w.masked_fill_(dead.unsqueeze(0), 0.0);
  const at::Tensor removed = masked ? removed_mask.to(device, at::kBool) : at::Tensor();
  if (masked) w.masked_fill_(removed, 0.0);
  const at::Tensor importance = h.diagonal().to(at::kCPU, at::kFloat).contiguous();

  InverseHessianFactor factor =
      inverse_hessian_factor(h, options.percdamp, options.max_damp_increases, name.empty() ? "gptq" : name);
  if (!factor.ok) {
    log_warning(strprintf("%s: Hessian not factorizable even with dampening %.3g; rounding to nearest",
                 name.empty() ? "gptq" : name.c_str(), factor.damp));
    factor.upper = at::eye(cols, h.options());
  }
  const at::Tensor u = factor.upper.to(at::kFloat);
  // Lattice types are rounded 8 columns at a time (vector rounding), each column's error then spread
  // as GPTQ does; the others one column at a time.
  const bool lattice = has_lattice_codes(type);
  if (!lattice && !has_block_codes(type)) throw Error("gptq: " + name + ": no code layout for " + enc.name);
  const int64_t step = lattice ? kLatticeGroupElements : 1;
  const std::optional<NearestCode> nearest = lattice ? std::nullopt : std::make_optional<NearestCode>(type, device);
  BlockFitter fitter(type, rows, cols);
  at::Tensor codes = at::zeros({rows, cols}, w.options());
  const int64_t lazy = std::max<int64_t>(1, (options.block_size + block - 1) / block) * block;

  at::Tensor scale, offset, q_group;  // q_group: the rounded values of the current `step` columns
  for (int64_t i1 = 0; i1 < cols; i1 += lazy) {
    const int64_t n = std::min(lazy, cols - i1), i2 = i1 + n;
    at::Tensor w1 = w.narrow(1, i1, n).clone();
    at::Tensor err1 = at::zeros_like(w1);
    const at::Tensor u1 = u.narrow(0, i1, n).narrow(1, i1, n);
    for (int64_t i = 0; i < n; ++i) {
      const int64_t k = i1 + i;
      if (k % block == 0) {
        at::Tensor part = w1.narrow(1, i, block);
        if (masked) part = part.masked_fill(removed.narrow(1, k, block), 0.0);
        part = part.to(at::kCPU).contiguous();
        if (lattice) {
          fitter.fit_headers(k / block, part, importance.data_ptr<float>() + k);
        } else {
          std::tie(scale, offset) = fitter.fit(k / block, part, importance.data_ptr<float>() + k);
          scale = scale.to(device);
          offset = offset.to(device);
        }
      }
      if (k % step == 0) {
        at::Tensor target = w1.narrow(1, i, step);
        if (masked) target = target.masked_fill(removed.narrow(1, k, step), 0.0);
        if (lattice) {
          // Each column's share of the loss: (w - q)^2 / U_jj^2, GPTQ's per-column error weight.
          const at::Tensor weight = u1.diagonal().narrow(0, i, step).square().reciprocal().to(at::kCPU).contiguous();
          q_group = fitter.recode_group(k, target.to(at::kCPU).contiguous(), weight.data_ptr<float>()).to(device);
        } else {
          const at::Tensor a = scale.narrow(1, k % block, 1), b = offset.narrow(1, k % block, 1);
          // A zero step (an all-zero block) makes every code give the offset: keep code 0.
          const at::Tensor code = at::where(a != 0, nearest->code((target - b) / a), at::zeros_like(target));
          codes.narrow(1, k, 1).copy_(code);
          q_group = a * nearest->level(code) + b;
        }
      }
      const at::Tensor col = w1.narrow(1, i, 1);
      const at::Tensor q = q_group.narrow(1, k % step, 1);
      const at::Tensor err = (col - q) / u1[i][i];
      w1.narrow(1, i, n - i).sub_(at::matmul(err, u1.narrow(0, i, 1).narrow(1, i, n - i)));
      err1.narrow(1, i, 1).copy_(err);
    }
    if (i2 < cols) w.narrow(1, i2, cols - i2).sub_(at::matmul(err1, u.narrow(0, i1, n).narrow(1, i2, cols - i2)));
  }
  const at::Tensor bytes = lattice ? fitter.bytes() : fitter.pack(codes.to(at::kCPU, at::kInt).contiguous());
  return std::make_shared<GgmlWeight>(type, bytes, cols, device);
}

std::string GgmlGptqCompressor::describe() const {
  char text[120];
  std::snprintf(text, sizeof text, "gptq (ggml blocks) damp %.3g block %lld", options_.percdamp,
                (long long)options_.block_size);
  std::set<std::string> imatrix_only;
  for (const auto& [name, type] : types())
    if (ggml_encoding(type).quantized && !has_block_codes(type) && !has_lattice_codes(type))
      imatrix_only.insert(tensor_type_name(type));
  std::string out = text;
  for (const std::string& t : imatrix_only) out += (t == *imatrix_only.begin() ? "; imatrix rounding for " : ", ") + t;
  return out;
}

std::shared_ptr<LinearWeight> GgmlGptqCompressor::compress(const std::string& name, const Linear& linear,
                                                           const InputStats& stats) {
  if (!stats.hessian.defined()) throw Error("gptq: " + name + ": no Hessian was collected");
  const TensorType type = type_of(name);
  if (ggml_encoding(type).quantized && !has_block_codes(type) && !has_lattice_codes(type)) {
    // The ternary types: no per-column codes; ggml's importance-weighted encoder with the Hessian
    // diagonal as the importance (llama-quantize --imatrix on the same calibration data).
    const at::Tensor importance = stats.hessian.diagonal().to(at::kFloat);
    return keep_pruning_mask(*linear.weight, GgmlWeight::encode(linear.weight->dense(), type, importance));
  }
  const PruningMask mask = linear.weight->pruning_mask();
  return keep_pruning_mask(*linear.weight, gptq_ggml_quantize(linear.weight->dense(), stats.hessian, type,
                                                              options_, name, mask.removed));
}

}  // namespace llmpress
