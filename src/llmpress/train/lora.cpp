#include "llmpress/train/lora.h"

#include <algorithm>
#include <cmath>
#include <regex>

#include "llmpress/core/error.h"
#include "llmpress/quant/ggml_block_header.h"
#include "llmpress/quant/ggml_weight.h"
#include "llmpress/quant/int_grid.h"
#include "llmpress/quant/rtn.h"

namespace llmpress {

void LoraSpec::check() const {
  if (rank < 1) throw Error("LoRA rank must be at least 1, not " + std::to_string(rank));
  if (!(alpha >= 0) || !std::isfinite(alpha)) throw Error("LoRA alpha must be a number >= 0");
  if (!(dropout >= 0 && dropout < 1)) throw Error("LoRA dropout must be in [0, 1)");
  if (group < 0) throw Error("QA-LoRA group must not be negative");
}

namespace {

void check_factors(const LinearWeight& base, const at::Tensor& a, const at::Tensor& b, int64_t group) {
  const int64_t pooled = group > 0 ? base.in_features() / group : base.in_features();
  if (group > 0 && base.in_features() % group != 0)
    throw Error("QA-LoRA group " + std::to_string(group) + " does not divide the input width " +
                std::to_string(base.in_features()));
  if (a.dim() != 2 || b.dim() != 2 || a.size(1) != pooled || b.size(0) != base.out_features() || b.size(1) != a.size(0))
    throw Error("LoRA factors have the wrong shapes for a " + std::to_string(base.out_features()) + "x" +
                std::to_string(base.in_features()) + " weight");
}

}  // namespace

LoraWeight::LoraWeight(std::shared_ptr<LinearWeight> base, const LoraSpec& spec, const at::Device& device)
    : base_(std::move(base)), alpha_(spec.alpha), dropout_(spec.dropout), group_(spec.group) {
  spec.check();
  const int64_t fan_in = group_ > 0 ? base_->in_features() / group_ : base_->in_features();
  at::Generator generator = at::detail::createCPUGenerator(spec.seed);
  // PEFT's kaiming_uniform_(a = sqrt(5)): bound 1 / sqrt(fan_in).
  const double bound = 1.0 / std::sqrt(double(fan_in));
  a_ = at::empty({spec.rank, fan_in}, at::kFloat).uniform_(-bound, bound, generator).to(device);
  b_ = at::zeros({base_->out_features(), spec.rank}, at::TensorOptions(at::kFloat).device(device));
  check_factors(*base_, a_, b_, group_);
}

LoraWeight::LoraWeight(std::shared_ptr<LinearWeight> base, at::Tensor a, at::Tensor b, double alpha, double dropout,
                       int64_t group)
    : base_(std::move(base)), a_(a.to(at::kFloat)), b_(b.to(at::kFloat)), alpha_(alpha), dropout_(dropout),
      group_(group) {
  if (!base_) throw Error("LoRA weight without a base");
  check_factors(*base_, a_, b_, group_);
}

at::Tensor LoraWeight::forward(const at::Tensor& x) const {
  at::Tensor input = x;
  if (group_ > 0) {  // average over each group of input columns
    std::vector<int64_t> shape = x.sizes().vec();
    shape.back() = x.size(-1) / group_;
    shape.push_back(group_);
    input = x.reshape(shape).mean(-1);
  }
  if (dropout_ > 0 && at::GradMode::is_enabled()) input = at::dropout(input, dropout_, /*train=*/true);
  const double scaling = alpha_ / double(rank());
  const at::Tensor low = at::matmul(at::matmul(input, a_.to(input.scalar_type()).t()), b_.to(input.scalar_type()).t());
  return base_->forward(x) + low * scaling;
}

int64_t LoraWeight::storage_bits() const { return base_->storage_bits() + (a_.numel() + b_.numel()) * 32; }

int64_t LoraWeight::parameter_count() const { return base_->parameter_count() + a_.numel() + b_.numel(); }

at::Tensor LoraWeight::plain_a() const {
  if (group_ == 0) return a_;
  return a_.repeat_interleave(group_, 1) / double(group_);
}

at::Tensor LoraWeight::update() const {
  return at::matmul(b_.detach(), plain_a().detach()) * (alpha_ / double(rank()));
}

at::Tensor LoraWeight::dense() const {
  const at::Tensor base = base_->dense().to(at::kFloat);
  return base + update().to(base.device());
}

WeightState LoraWeight::save() const {
  WeightState state{"lora", {{"alpha", alpha_}, {"dropout", dropout_}, {"group", group_}}, {}};
  state.tensors["lora_A"] = a_.detach();
  state.tensors["lora_B"] = b_.detach();
  state.put("base", *base_);
  return state;
}

std::vector<TrainableTensor> LoraWeight::trainable() const { return {{"_lora_A", a_, {}}, {"_lora_B", b_, {}}}; }

namespace {

const WeightKindRegistration lora_kind("lora", [](const WeightState& s) -> std::shared_ptr<LinearWeight> {
  return std::make_shared<LoraWeight>(s.take("base"), s.tensor("lora_A"), s.tensor("lora_B"),
                                      s.meta.at("alpha").get<double>(), s.meta.at("dropout").get<double>(),
                                      s.meta.at("group").get<int64_t>());
});

// Q4_1 / Q5_1 store each block's offset as an f16 min: an update constant inside every block (a QA-LoRA
// group of whole blocks) is added to it, and the codes stay as they are.
bool merges_into_block_mins(const LoraWeight& lora) {
  const auto* g = dynamic_cast<const GgmlWeight*>(lora.base().get());
  if (!g || (g->type() != TensorType::Q4_1 && g->type() != TensorType::Q5_1)) return false;
  const int64_t block = tensor_type_info(g->type()).block_elements;
  return lora.group() > 0 && lora.group() % block == 0;
}

std::shared_ptr<LinearWeight> merge_into_block_mins(const LoraWeight& lora) {
  const auto& base = static_cast<const GgmlWeight&>(*lora.base());
  const TensorTypeInfo& info = tensor_type_info(base.type());
  const at::Tensor update = lora.update().to(at::kCPU).contiguous();
  at::Tensor bytes = base.bytes().clone();
  const int64_t rows = bytes.size(0), blocks = base.in_features() / info.block_elements;
  const float* u = update.data_ptr<float>();
  for (int64_t r = 0; r < rows; ++r) {
    uint8_t* row = bytes[r].data_ptr<uint8_t>();
    for (int64_t k = 0; k < blocks; ++k) {
      uint8_t* block = row + k * info.block_bytes;
      BlockHeader header = read_block_header(base.type(), block);
      header.min += u[r * base.in_features() + k * info.block_elements];
      write_block_header(base.type(), block, header);
    }
  }
  return std::make_shared<GgmlWeight>(base.type(), bytes, base.in_features(), base.device());
}

}  // namespace

std::shared_ptr<LinearWeight> merged_weight(const LoraWeight& lora, MergeCounts& counts) {
  if (merges_into_block_mins(lora)) {
    ++counts.exact;
    return merge_into_block_mins(lora);
  }
  const at::Tensor merged = lora.dense();
  if (const auto* g = dynamic_cast<const GgmlWeight*>(lora.base().get())) {
    ++counts.requantized;
    return GgmlWeight::encode(merged, g->type());
  }
  if (const auto* q = dynamic_cast<const QuantizedWeight*>(lora.base().get())) {
    ++counts.requantized;
    return rtn_quantize(merged, q->spec());
  }
  ++counts.dense;
  return std::make_shared<DenseWeight>(merged);
}

MergeCounts merge_lora(Transformer& model) {
  MergeCounts counts;
  for (DecoderLayer& layer : model.layers)
    for (const std::string& name : DecoderLayer::linear_names()) {
      Linear& linear = layer.linear(name);
      if (const auto* lora = dynamic_cast<const LoraWeight*>(linear.weight.get()))
        linear.weight = merged_weight(*lora, counts);
    }
  return counts;
}

int64_t add_lora(Transformer& model, const LoraSpec& spec, const std::string& target) {
  spec.check();
  std::regex pattern;
  try {
    pattern = std::regex(target, std::regex::ECMAScript);
  } catch (const std::regex_error& e) {
    throw Error("LoRA target '" + target + "' is not a valid regex: " + e.what());
  }
  int64_t added = 0;
  for (size_t i = 0; i < model.layers.size(); ++i) {
    const auto& names = DecoderLayer::linear_names();
    for (size_t j = 0; j < names.size(); ++j) {
      const std::string full = "model.layers." + std::to_string(i) + "." + names[j];
      if (!target.empty() && !std::regex_search(full, pattern)) continue;
      Linear& linear = model.layers[i].linear(names[j]);
      LoraSpec seeded = spec;
      seeded.seed = spec.seed * 1000003 + i * names.size() + j;
      linear.weight = std::make_shared<LoraWeight>(linear.weight, seeded, model.device());
      ++added;
    }
  }
  if (added == 0)
    throw Error("LoRA target '" + target + "' matches no decoder linear (names look like "
                "model.layers.0.self_attn.q_proj, model.layers.3.mlp.down_proj)");
  return added;
}

int64_t apply_lora_adapter(Transformer& model, const LoraAdapter& adapter, const std::string& source) {
  for (const LoraAdapterTensors& t : adapter.tensors) {
    const std::string prefix = "model.layers.";
    const size_t dot = t.module.find('.', prefix.size());
    const std::string index = t.module.compare(0, prefix.size(), prefix) == 0 && dot != std::string::npos
                                  ? t.module.substr(prefix.size(), dot - prefix.size()) : "";
    if (index.empty() || index.size() > 6 || index.find_first_not_of("0123456789") != std::string::npos ||
        std::stoll(index) >= int64_t(model.layers.size()))
      throw file_error(source, t.module + " is not a decoder linear of this model");
    const int64_t layer = std::stoll(index);
    Linear& linear = model.layers[size_t(layer)].linear(t.module.substr(dot + 1));
    try {
      linear.weight = std::make_shared<LoraWeight>(linear.weight, t.a.to(model.device()), t.b.to(model.device()),
                                                   adapter.alpha, 0.0, 0);
    } catch (const Error& e) {
      throw file_error(source, t.module + ": " + e.what());
    }
  }
  return int64_t(adapter.tensors.size());
}

std::vector<std::pair<std::string, const LoraWeight*>> lora_adapters(const DecoderLayer& layer) {
  std::vector<std::pair<std::string, const LoraWeight*>> out;
  for (const std::string& name : DecoderLayer::linear_names())
    if (const auto* lora = dynamic_cast<const LoraWeight*>(layer.linear(name).weight.get())) out.push_back({name, lora});
  return out;
}

}  // namespace llmpress
