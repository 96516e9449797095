#include "llmpress/quant/gptq_ggml.h"

#include <cstdio>
#include <cstring>
#include <vector>

#include "llmpress/core/error.h"
#include "llmpress/core/log.h"
#include "llmpress/model/sparse_weight.h"
#include "llmpress/export/ggml_quantize.h"
#include "llmpress/quant/ggml_codes.h"
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

  // Fits block `block` of every row to part [rows, block_elements] (CPU float32) and returns
  // each element's grid (scale, offset), both [rows, block_elements].
  std::pair<at::Tensor, at::Tensor> fit(int64_t block, const at::Tensor& part, const float* importance) {
    const int64_t n = enc_.block_elements;
    at::Tensor scale = at::empty({rows_, n}, at::kFloat), offset = at::empty({rows_, n}, at::kFloat);
    const float* src = part.data_ptr<float>();
    for (int64_t r = 0; r < rows_; ++r) {
      uint8_t* dst = block_at(r, block);
      if (enc_.encode_weighted && importance) enc_.encode_weighted(src + r * n, n, importance, dst);
      else enc_.encode(src + r * n, n, dst);
      block_affine_grid(enc_.type, dst, scale.data_ptr<float>() + r * n, offset.data_ptr<float>() + r * n);
    }
    return {scale, offset};
  }

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
  const BlockCodeRange range = block_code_range(type);
  BlockFitter fitter(type, rows, cols);
  at::Tensor codes = at::zeros({rows, cols}, w.options());
  const int64_t lazy = std::max<int64_t>(1, (options.block_size + block - 1) / block) * block;

  at::Tensor scale, offset;
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
        std::tie(scale, offset) = fitter.fit(k / block, part, importance.data_ptr<float>() + k);
        scale = scale.to(device);
        offset = offset.to(device);
      }
      const at::Tensor col = w1.narrow(1, i, 1);
      const at::Tensor a = scale.narrow(1, k % block, 1), b = offset.narrow(1, k % block, 1);
      // A zero step (an all-zero block) makes every code give the offset: keep code 0.
      const at::Tensor target = masked ? col.masked_fill(removed.narrow(1, k, 1), 0.0) : col;
      const at::Tensor code =
          at::where(a != 0, at::clamp(at::round((target - b) / a), range.min_code, range.max_code), at::zeros_like(col));
      const at::Tensor q = a * code + b;
      codes.narrow(1, k, 1).copy_(code);
      const at::Tensor err = (col - q) / u1[i][i];
      w1.narrow(1, i, n - i).sub_(at::matmul(err, u1.narrow(0, i, 1).narrow(1, i, n - i)));
      err1.narrow(1, i, 1).copy_(err);
    }
    if (i2 < cols) w.narrow(1, i2, cols - i2).sub_(at::matmul(err1, u.narrow(0, i1, n).narrow(1, i2, cols - i2)));
  }
  return std::make_shared<GgmlWeight>(type, fitter.pack(codes.to(at::kCPU, at::kInt).contiguous()), cols, device);
}

std::string GgmlGptqCompressor::describe() const {
  char text[120];
  std::snprintf(text, sizeof text, "gptq (ggml blocks) damp %.3g block %lld", options_.percdamp,
                (long long)options_.block_size);
  return text;
}

std::shared_ptr<LinearWeight> GgmlGptqCompressor::compress(const std::string& name, const Linear& linear,
                                                           const InputStats& stats) {
  if (!stats.hessian.defined()) throw Error("gptq: " + name + ": no Hessian was collected");
  const PruningMask mask = linear.weight->pruning_mask();
  return keep_pruning_mask(*linear.weight, gptq_ggml_quantize(linear.weight->dense(), stats.hessian, type_of(name),
                                                              options_, name, mask.removed));
}

}  // namespace llmpress
