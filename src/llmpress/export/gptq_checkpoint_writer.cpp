#include "llmpress/export/gptq_checkpoint_writer.h"

#include "llmpress/core/error.h"
#include "llmpress/export/safetensors_writer.h"
#include "llmpress/io/gptq_packing.h"

namespace llmpress {

std::vector<NamedTensor> gptq_packed_tensors(const std::string& module, const QuantizedWeight& weight,
                                             bool zero_minus_one) {
  const int bits = weight.spec().bits;
  const at::Tensor zeros = weight.zeros().to(at::kLong) - (zero_minus_one ? 1 : 0);  // [out, groups]
  return {{module + ".qweight", pack_gptq_rows(weight.codes().t(), bits)},
          {module + ".qzeros", pack_gptq_rows(zeros, bits).t().contiguous()},
          {module + ".scales", weight.scales().t().to(at::kHalf).contiguous()},
          {module + ".g_idx", weight.g_idx().to(at::kInt)}};
}

void check_gptq_layer(const std::string& target, const std::string& name, const IntGridSpec& s, int64_t out,
                      int64_t in) {
  if (s.bits != 2 && s.bits != 3 && s.bits != 4 && s.bits != 8)
    throw Error(target + ": " + std::to_string(s.bits) + "-bit grids cannot be stored (2, 3, 4 or 8 bits); "
                "use --format dense or gguf");
  if (in % 32 != 0 || out % 32 != 0)
    throw Error(target + ": " + name + " is " + std::to_string(out) + " x " + std::to_string(in) +
                "; GPTQ packing needs both sizes to be multiples of 32 (use --format dense or gguf for this model)");
}

nlohmann::json gptq_quantization_config(const IntGridSpec& spec, bool act_order, bool zero_minus_one,
                                        const nlohmann::json& meta) {
  const std::string format = zero_minus_one ? "gptq" : "gptq_v2";
  nlohmann::json q = {{"quant_method", "gptq"},
                      {"bits", spec.bits},
                      {"group_size", spec.group_size > 0 ? spec.group_size : -1},
                      {"desc_act", act_order},
                      {"sym", spec.symmetric},
                      {"checkpoint_format", format},
                      {"format", format},
                      {"pack_dtype", "int32"}};
  for (const auto& [key, value] : meta.items()) q[key] = value;
  return q;
}

std::vector<NamedTensor> awq_packed_tensors(const std::string& module, const QuantizedWeight& weight) {
  return {{module + ".qweight", pack_awq_columns(weight.codes().t())},
          {module + ".qzeros", pack_awq_columns(weight.zeros().t())},
          {module + ".scales", weight.scales().t().to(at::kHalf).contiguous()}};
}

void check_awq_layer(const std::string& target, const std::string& name, const IntGridSpec& s, bool act_order,
                     int64_t out, int64_t in) {
  if (s.bits != 4)
    throw Error(target + ": AWQ checkpoints hold 4-bit grids only, not " + std::to_string(s.bits) +
                " bits; use --bits 4, or --format gptq");
  if (act_order)
    throw Error(target + ": " + name + " was quantized in act-order, whose groups AWQ cannot store (it has no g_idx); "
                "quantize without --act-order, or use --format gptq");
  if (in % 32 != 0 || out % 32 != 0 || (s.group_size > 0 && in % s.group_size != 0))
    throw Error(target + ": " + name + " is " + std::to_string(out) + " x " + std::to_string(in) +
                "; AWQ packing needs both sizes to be multiples of 32 and of the group size (use --format dense or gguf)");
}

nlohmann::json awq_quantization_config(const IntGridSpec& spec, const nlohmann::json& meta) {
  nlohmann::json q = {{"quant_method", "awq"},
                      {"bits", spec.bits},
                      {"group_size", spec.group_size > 0 ? spec.group_size : -1},
                      {"zero_point", true},
                      {"version", "gemm"},
                      {"modules_to_not_convert", nullptr}};
  for (const auto& [key, value] : meta.items()) q[key] = value;
  return q;
}

void write_gptq_checkpoint(const std::string& dir, const ModelConfig& config, const std::vector<NamedTensor>& tensors,
                           const std::map<std::string, std::shared_ptr<const QuantizedWeight>>& linears,
                           const std::vector<std::string>& tokenizer_files, const nlohmann::json& meta) {
  const std::string target = "GPTQ export to " + dir;
  if (linears.empty()) throw Error(target + ": no quantized linear layers");
  const QuantizedWeight& first = *linears.begin()->second;
  const IntGridSpec& spec = first.spec();
  bool zero_minus_one = true;
  for (const auto& [name, weight] : linears) {
    const IntGridSpec& s = weight->spec();
    if (s.bits != spec.bits || s.group_size != spec.group_size || s.symmetric != spec.symmetric ||
        weight->act_order() != first.act_order())
      throw Error(target + ": " + name + " is on a different grid than the other layers (the format has one)");
    check_gptq_layer(target, name, s, weight->out_features(), weight->in_features());
    if (weight->zeros().min().item<int64_t>() == 0) zero_minus_one = false;
  }

  HfCheckpointOptions options;
  options.dtype = at::kHalf;
  for (const auto& [name, weight] : linears) {
    const std::string module = name.substr(0, name.size() - std::string(".weight").size());
    options.replacements[name] = gptq_packed_tensors(module, *weight, zero_minus_one);
  }
  options.extra_config["quantization_config"] = gptq_quantization_config(spec, first.act_order(), zero_minus_one, meta);
  write_hf_checkpoint(dir, config, tensors, tokenizer_files, options);
}

}  // namespace llmpress
