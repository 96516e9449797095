#include "llmpress/quant/fake_quant.h"

#include <cstring>

#include "llmpress/core/error.h"
#include "llmpress/quant/ggml_block_header.h"
#include "llmpress/quant/ggml_codes.h"
#include "llmpress/quant/ggml_weight.h"

namespace llmpress {

namespace {

// x + (f(x) - x).detach(): f(x) forward (exactly, for the roundings used here), identity backward.
at::Tensor straight_through(const at::Tensor& x, const at::Tensor& rounded) { return x + (rounded - x).detach(); }
at::Tensor round_ste(const at::Tensor& x) { return straight_through(x, at::round(x)); }
at::Tensor stored_ste(const at::Tensor& x, at::ScalarType dtype) {
  return dtype == at::kFloat ? x : straight_through(x, x.to(dtype).to(at::kFloat));
}
at::Tensor f16_ste(const at::Tensor& x) { return stored_ste(x, at::kHalf); }
// A divisor that is never zero: where the step is 0 every value is the offset whatever the code.
at::Tensor safe_divisor(const at::Tensor& step) { return at::where(step == 0, at::ones_like(step), step); }

// The rounded quantities of one forward: stored scales and the integer codes, differentiable.
struct GridForward {
  at::Tensor step;    // per element's group (int) or sub-block (ggml), broadcastable to the latent's view
  at::Tensor offset;  // ggml: added after the multiply (undefined: none)
  at::Tensor zero;    // int: subtracted from the code before the multiply
  at::Tensor code;    // stored codes as float
  at::Tensor d, sub_scale, min, sub_min;  // ggml header fields (rounded), for export
  at::Tensor scale, zero_point;           // int grid per (row, group), for export
};

}  // namespace

FakeQuantWeight::Learned FakeQuantWeight::Learned::relative_to(const at::Tensor& initial, bool integral) {
  const at::Tensor x = initial.to(at::kFloat);
  if (!integral) return {at::ones_like(x), x.clone()};
  const at::Tensor zero = x == 0;
  return {at::where(zero, at::zeros_like(x), at::ones_like(x)), at::where(zero, at::ones_like(x), x)};
}

FakeQuantWeight::FakeQuantWeight(Parts parts) : p_(std::move(parts)) {
  if (!p_.latent.defined() || p_.latent.dim() != 2 || !p_.scale.defined())
    throw Error("fake-quant weight: the latent matrix and the scales are required");
  p_.latent = p_.latent.to(at::kFloat);
  if (p_.codes.defined() && p_.codes.sizes() != p_.latent.sizes())
    throw Error("fake-quant weight: the fixed codes have another shape than the weight");
  if (p_.ggml) {
    const BlockGrid& grid = block_grid(p_.type);
    const int64_t block = grid.sub_blocks * grid.sub_elements;
    const int64_t rows = p_.latent.size(0), blocks = p_.latent.size(1) / block;
    const auto expect = [&](const Learned& t, std::vector<int64_t> shape, bool needed, const char* what) {
      const auto shaped = [&](const at::Tensor& x) { return !x.defined() || x.sizes() == at::IntArrayRef(shape); };
      if (needed != t.defined() || (needed && !(shaped(t.value) && shaped(t.unit))))
        throw Error(std::string("fake-quant ") + tensor_type_name(p_.type) + " weight: bad " + what);
    };
    if (p_.latent.size(1) % block != 0) throw Error("fake-quant weight: rows are not whole blocks");
    expect(p_.scale, {rows, blocks}, true, "scales");
    expect(p_.zero_or_min, {rows, blocks}, grid.offset != BlockGrid::Offset::None, "mins");
    expect(p_.sub_scale, {rows, blocks, grid.sub_blocks}, grid.sub_scales, "sub-block scales");
    expect(p_.sub_min, {rows, blocks, grid.sub_blocks}, grid.offset == BlockGrid::Offset::SubBlockMin,
           "sub-block mins");
  } else {
    p_.grid.check();
    if (!p_.zero_or_min.defined() || p_.zero_or_min.value.sizes() != p_.scale.value.sizes() || !p_.g_idx.defined() ||
        p_.g_idx.numel() != p_.latent.size(1) || p_.scale.value.size(0) != p_.latent.size(0) ||
        (p_.scale.unit.defined() && p_.scale.unit.sizes() != p_.scale.value.sizes()))
      throw Error("fake-quant integer weight: inconsistent shapes of latent, scales, zeros and g_idx");
  }
}

bool FakeQuantWeight::can_wrap(const LinearWeight& weight) {
  if (dynamic_cast<const QuantizedWeight*>(&weight)) return true;
  const auto* g = dynamic_cast<const GgmlWeight*>(&weight);
  return g && has_block_grid(g->type());
}

std::shared_ptr<FakeQuantWeight> FakeQuantWeight::wrap(const LinearWeight& weight, const FakeQuantStart& options) {
  Parts parts;
  const auto latent = [&](const at::Tensor& dequantized) {
    if (!options.latent.defined()) return dequantized.clone();
    if (options.latent.sizes() != dequantized.sizes()) throw Error("fake-quant: the latent has another shape than the weight");
    return options.latent.detach().to(dequantized.device(), at::kFloat).clone();
  };
  if (const auto* q = dynamic_cast<const QuantizedWeight*>(&weight)) {
    parts.grid = q->spec();
    parts.grid.scale_dtype = q->scales().scalar_type();
    parts.act_order = q->act_order();
    parts.latent = latent(q->dense());
    if (options.fixed_codes) parts.codes = q->codes().to(parts.latent.device(), at::kFloat);
    parts.scale = Learned::relative_to(q->scales(), false);
    parts.zero_or_min = {q->zeros().to(at::kFloat), {}};
    parts.g_idx = q->g_idx().to(at::kLong);
    return std::make_shared<FakeQuantWeight>(std::move(parts));
  }
  const auto* g = dynamic_cast<const GgmlWeight*>(&weight);
  if (!g || !has_block_grid(g->type()))
    throw Error("fake-quant: a " + weight.kind() + " weight is not an integer grid or a ggml block type with a grid");
  const TensorType type = g->type();
  const BlockGrid& grid = block_grid(type);
  const TensorTypeInfo& info = tensor_type_info(type);
  const int64_t rows = g->out_features(), blocks = g->in_features() / info.block_elements;
  at::Tensor d = at::empty({rows, blocks}), min = at::zeros({rows, blocks});
  at::Tensor sub_scale = at::empty({rows, blocks, grid.sub_blocks}), sub_min = at::empty({rows, blocks, grid.sub_blocks});
  at::Tensor codes = at::empty({rows, blocks * info.block_elements});
  const uint8_t* bytes = g->bytes().data_ptr<uint8_t>();
  auto d_ = d.accessor<float, 2>(), min_ = min.accessor<float, 2>();
  auto codes_ = codes.accessor<float, 2>();
  auto sub_scale_ = sub_scale.accessor<float, 3>(), sub_min_ = sub_min.accessor<float, 3>();
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t b = 0; b < blocks; ++b) {
      const uint8_t* block = bytes + (r * blocks + b) * info.block_bytes;
      const BlockHeader h = read_block_header(type, block);
      for (int e = 0; options.fixed_codes && e < int(info.block_elements); ++e)
        codes_[r][b * info.block_elements + e] = float(read_block_code(type, block, e));
      d_[r][b] = h.d;
      min_[r][b] = h.min;
      for (int j = 0; j < grid.sub_blocks; ++j) {
        sub_scale_[r][b][j] = float(h.scales[size_t(j)]);
        sub_min_[r][b][j] = float(h.mins[size_t(j)]);
      }
    }
  const at::Device device = g->dense().device();
  parts.ggml = true;
  parts.type = type;
  parts.latent = latent(g->dense());
  if (options.fixed_codes) parts.codes = codes.to(device);
  parts.scale = Learned::relative_to(d.to(device), false);
  if (grid.offset != BlockGrid::Offset::None) parts.zero_or_min = Learned::relative_to(min.to(device), false);
  if (grid.sub_scales) parts.sub_scale = Learned::relative_to(sub_scale.to(device), true);
  if (grid.offset == BlockGrid::Offset::SubBlockMin) parts.sub_min = Learned::relative_to(sub_min.to(device), true);
  return std::make_shared<FakeQuantWeight>(std::move(parts));
}

namespace {

GridForward int_grid_forward(const FakeQuantWeight::Parts& p) {
  const double max_code = double(p.grid.max_code());
  GridForward f;
  f.scale = stored_ste(p.scale.effective(), p.grid.scale_dtype);
  const at::Tensor zero = p.zero_or_min.effective();
  f.zero_point = p.grid.symmetric ? zero : at::clamp(round_ste(zero), 0.0, max_code);
  f.step = f.scale.index_select(1, p.g_idx);
  f.zero = f.zero_point.index_select(1, p.g_idx);
  f.code = p.codes.defined() ? p.codes : at::clamp(round_ste(p.latent / safe_divisor(f.step)) + f.zero, 0.0, max_code);
  return f;
}

GridForward block_forward(const FakeQuantWeight::Parts& p) {
  const BlockGrid& grid = block_grid(p.type);
  const int64_t rows = p.latent.size(0), blocks = p.scale.value.size(1);
  const at::Tensor w = p.latent.view({rows, blocks, grid.sub_blocks, grid.sub_elements});
  GridForward f;
  f.d = f16_ste(p.scale.effective());
  const at::Tensor d = f.d.view({rows, blocks, 1, 1});
  if (grid.sub_scales) {
    f.sub_scale = at::clamp(round_ste(p.sub_scale.effective()), grid.scale_min, grid.scale_max);
    f.step = d * f.sub_scale.unsqueeze(-1);
  } else {
    f.step = d;
  }
  if (grid.offset != BlockGrid::Offset::None) f.min = f16_ste(p.zero_or_min.effective());
  if (grid.offset == BlockGrid::Offset::BlockMin) f.offset = f.min.view({rows, blocks, 1, 1});
  if (grid.offset == BlockGrid::Offset::SubBlockMin) {
    f.sub_min = at::clamp(round_ste(p.sub_min.effective()), 0, grid.min_max);
    f.offset = -(f.min.view({rows, blocks, 1, 1}) * f.sub_min.unsqueeze(-1));
  }
  if (p.codes.defined()) {
    f.code = p.codes.view(w.sizes());
  } else {
    const at::Tensor centred = f.offset.defined() ? w - f.offset : w;
    f.code = at::clamp(round_ste(centred / safe_divisor(f.step)) + grid.code_offset, grid.code_min, grid.code_max);
  }
  return f;
}

}  // namespace

at::Tensor FakeQuantWeight::grid_values() const {
  const GridForward f = int_grid_forward(p_);
  return f.step * (f.code - f.zero);  // grid_values()'s arithmetic
}

at::Tensor FakeQuantWeight::block_values() const {
  const GridForward f = block_forward(p_);
  const BlockGrid& grid = block_grid(p_.type);
  at::Tensor v = f.step * (f.code - grid.code_offset);
  if (f.offset.defined()) v = v + f.offset;  // no "+ 0" elsewhere: it would turn -0 into +0
  return v.view({p_.latent.size(0), p_.latent.size(1)});
}

at::Tensor FakeQuantWeight::values() const { return p_.ggml ? block_values() : grid_values(); }

at::Tensor FakeQuantWeight::forward(const at::Tensor& x) const { return at::linear(x, values().to(x.scalar_type())); }

at::Tensor FakeQuantWeight::dense() const {
  at::NoGradGuard no_grad;
  return values();
}

int64_t FakeQuantWeight::storage_bits() const {
  if (p_.ggml) {
    const TensorTypeInfo& info = tensor_type_info(p_.type);
    return out_features() * (in_features() / info.block_elements) * info.block_bytes * 8;
  }
  // As QuantizedWeight counts: codes and zeros at `bits`, scales at their dtype, g_idx with act-order.
  const int64_t groups = p_.scale.value.numel();
  int64_t bits = (p_.latent.numel() + groups) * p_.grid.bits;
  bits += groups * int64_t(c10::elementSize(p_.grid.scale_dtype)) * 8;
  return bits + (p_.act_order ? in_features() * 32 : 0);
}

std::shared_ptr<LinearWeight> FakeQuantWeight::exported() const {
  at::NoGradGuard no_grad;
  if (!p_.ggml) {
    const GridForward f = int_grid_forward(p_);
    return std::make_shared<QuantizedWeight>(f.code.to(at::kByte), f.scale.to(p_.grid.scale_dtype),
                                             f.zero_point.to(at::kByte), p_.g_idx.to(at::kInt), p_.grid, p_.act_order);
  }
  const GridForward f = block_forward(p_);
  const BlockGrid& grid = block_grid(p_.type);
  const TensorTypeInfo& info = tensor_type_info(p_.type);
  const int64_t rows = out_features(), blocks = in_features() / info.block_elements;
  const at::Tensor d = f.d.cpu().contiguous(), codes = f.code.cpu().to(at::kInt).contiguous();
  const at::Tensor min = f.min.defined() ? f.min.cpu().contiguous() : at::Tensor();
  const at::Tensor sub_scale = f.sub_scale.defined() ? f.sub_scale.cpu().to(at::kInt).contiguous() : at::Tensor();
  const at::Tensor sub_min = f.sub_min.defined() ? f.sub_min.cpu().to(at::kInt).contiguous() : at::Tensor();
  at::Tensor bytes = at::zeros({rows, blocks * info.block_bytes}, at::kByte);
  uint8_t* out = bytes.data_ptr<uint8_t>();
  const int* code = codes.data_ptr<int>();
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t b = 0; b < blocks; ++b) {
      const int64_t index = r * blocks + b;
      BlockHeader h;
      h.d = d.data_ptr<float>()[index];
      if (min.defined()) h.min = min.data_ptr<float>()[index];
      for (int j = 0; j < grid.sub_blocks; ++j) {
        if (sub_scale.defined()) h.scales[size_t(j)] = sub_scale.data_ptr<int>()[index * grid.sub_blocks + j];
        if (sub_min.defined()) h.mins[size_t(j)] = sub_min.data_ptr<int>()[index * grid.sub_blocks + j];
      }
      uint8_t* block = out + index * info.block_bytes;
      write_block_header(p_.type, block, h);
      for (int e = 0; e < int(info.block_elements); ++e)
        write_block_code(p_.type, block, e, code[index * info.block_elements + e]);
    }
  return std::make_shared<GgmlWeight>(p_.type, bytes, in_features(), p_.latent.device());
}

std::vector<TrainableTensor> FakeQuantWeight::trainable() const {
  std::vector<TrainableTensor> out;
  if (!p_.codes.defined()) out.push_back({"", p_.latent, {}, true});
  out.push_back({"_qscale", p_.scale.value, {}, false});
  if (p_.sub_scale.defined()) out.push_back({"_qsub_scale", p_.sub_scale.value, {}, false});
  if (p_.ggml && p_.zero_or_min.defined()) out.push_back({"_qmin", p_.zero_or_min.value, {}, false});
  if (!p_.ggml && !p_.grid.symmetric) out.push_back({"_qzero", p_.zero_or_min.value, {}, false});
  if (p_.sub_min.defined()) out.push_back({"_qsub_min", p_.sub_min.value, {}, false});
  return out;
}

WeightState FakeQuantWeight::save() const {
  WeightState s;
  s.kind = "fake-quant";
  if (p_.ggml) {
    s.meta = {{"format", "ggml"}, {"type_id", uint32_t(p_.type)}, {"type", tensor_type_name(p_.type)}};
  } else {
    s.meta = {{"format", "int"}, {"bits", p_.grid.bits}, {"symmetric", p_.grid.symmetric},
              {"group_size", p_.grid.group_size}, {"scale_dtype", c10::toString(p_.grid.scale_dtype)},
              {"act_order", p_.act_order}};
  }
  if (p_.g_idx.defined()) s.tensors["g_idx"] = p_.g_idx;
  if (p_.codes.defined()) s.tensors["codes"] = p_.codes;
  s.tensors["latent"] = p_.latent.detach();
  const std::pair<const char*, const Learned*> learned[] = {
      {"scale", &p_.scale}, {"zero_or_min", &p_.zero_or_min}, {"sub_scale", &p_.sub_scale}, {"sub_min", &p_.sub_min}};
  for (const auto& [name, l] : learned) {
    if (l->value.defined()) s.tensors[name] = l->value.detach();
    if (l->unit.defined()) s.tensors[std::string(name) + "_unit"] = l->unit;
  }
  return s;
}

namespace {

at::Tensor optional_tensor(const WeightState& s, const std::string& name) {
  const auto it = s.tensors.find(name);
  return it == s.tensors.end() ? at::Tensor() : it->second;
}

FakeQuantWeight::Learned learned(const WeightState& s, const std::string& name) {
  return {optional_tensor(s, name), optional_tensor(s, name + "_unit")};
}

at::ScalarType scale_dtype_named(const std::string& name) {
  for (at::ScalarType t : {at::kHalf, at::kBFloat16, at::kFloat})
    if (name == c10::toString(t)) return t;
  throw Error("saved fake-quant weight has an unknown scale dtype '" + name + "'");
}

const WeightKindRegistration fake_quant_kind("fake-quant", [](const WeightState& s) -> std::shared_ptr<LinearWeight> {
  FakeQuantWeight::Parts p;
  p.ggml = s.meta.at("format").get<std::string>() == "ggml";
  if (p.ggml) {
    const uint32_t id = s.meta.at("type_id").get<uint32_t>();
    if (!tensor_type_info(id) || !has_block_grid(TensorType(id)))
      throw Error("saved fake-quant weight has a ggml type id without a block grid: " + std::to_string(id));
    p.type = TensorType(id);
  } else {
    p.grid.bits = s.meta.at("bits").get<int>();
    p.grid.symmetric = s.meta.at("symmetric").get<bool>();
    p.grid.group_size = s.meta.at("group_size").get<int64_t>();
    p.grid.scale_dtype = scale_dtype_named(s.meta.at("scale_dtype").get<std::string>());
    p.act_order = s.meta.at("act_order").get<bool>();
  }
  p.latent = s.tensor("latent");
  s.tensor("scale");  // required: an Error naming what is missing
  p.scale = learned(s, "scale");
  p.zero_or_min = learned(s, "zero_or_min");
  p.sub_scale = learned(s, "sub_scale");
  p.sub_min = learned(s, "sub_min");
  if (!p.ggml) p.g_idx = s.tensor("g_idx").to(at::kLong);
  p.codes = optional_tensor(s, "codes");
  return std::make_shared<FakeQuantWeight>(std::move(p));
});

template <typename F>
int64_t for_each_linear(Transformer& model, F&& f) {
  int64_t changed = 0;
  const auto visit = [&](Linear& linear) {
    if (linear.weight && f(linear)) ++changed;
  };
  for (DecoderLayer& layer : model.layers)
    for (const std::string& name : DecoderLayer::linear_names()) visit(layer.linear(name));
  visit(model.lm_head);
  return changed;
}

}  // namespace

int64_t wrap_fake_quant(Transformer& model, bool fixed_codes) {
  return for_each_linear(model, [fixed_codes](Linear& linear) {
    if (!FakeQuantWeight::can_wrap(*linear.weight)) return false;
    linear.weight = FakeQuantWeight::wrap(*linear.weight, {fixed_codes, {}});
    return true;
  });
}

namespace {

bool export_linear(Linear& linear) {
  const auto* fake = dynamic_cast<const FakeQuantWeight*>(linear.weight.get());
  if (!fake) return false;
  linear.weight = fake->exported();
  return true;
}

}  // namespace

int64_t export_fake_quant(Transformer& model) { return for_each_linear(model, export_linear); }

int64_t export_fake_quant(DecoderLayer& layer) {
  int64_t changed = 0;
  for (const std::string& name : DecoderLayer::linear_names()) changed += export_linear(layer.linear(name));
  return changed;
}

}  // namespace llmpress
