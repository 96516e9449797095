#include "llmpress/io/gptq_checkpoint.h"

#include <nlohmann/json.hpp>

#include <cstring>

#include "llmpress/core/error.h"
#include "llmpress/data/text.h"
#include "llmpress/io/checkpoint.h"
#include "llmpress/io/gptq_packing.h"
#include "llmpress/io/mapped_file.h"

namespace llmpress {

namespace {

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// int32 tensors are copied as they are (through float they would lose bits); float16 is decoded.
at::Tensor decode_raw(const RawTensor& raw) {
  if (tensor_bytes(raw.type, uint64_t(raw.numel())) != raw.nbytes)
    throw file_error(raw.file, "tensor " + raw.name + " has a byte count that does not match its shape");
  if (raw.type == TensorType::I32) {
    at::Tensor t = at::empty({raw.numel()}, at::kInt);
    std::memcpy(t.data_ptr<int32_t>(), raw.data, raw.nbytes);
    return t.reshape(raw.shape);
  }
  at::Tensor flat = at::empty({raw.numel()}, at::kFloat);
  decode_to_f32(raw.type, raw.data, raw.numel(), flat.data_ptr<float>());
  return flat.reshape(raw.shape);
}

// A RawTensor over bytes made here rather than read from `like`'s file: the bytes live in the
// mapping's control block (an aliasing shared_ptr), so they last as long as the tensor's copies.
RawTensor owned_int32(const at::Tensor& values, const RawTensor& like, const std::string& name) {
  struct Holder {
    std::vector<uint8_t> bytes;
    std::shared_ptr<MappedFile> file;
  };
  const at::Tensor t = values.to(at::kCPU, at::kInt).contiguous();
  auto holder = std::make_shared<Holder>();
  holder->bytes.resize(size_t(t.numel()) * 4);
  std::memcpy(holder->bytes.data(), t.data_ptr<int32_t>(), holder->bytes.size());
  holder->file = like.mapping;
  RawTensor raw;
  raw.name = name;
  raw.file = like.file;
  raw.type = TensorType::I32;
  raw.shape = t.sizes().vec();
  raw.data = holder->bytes.data();
  raw.nbytes = holder->bytes.size();
  raw.mapping = std::shared_ptr<MappedFile>(holder, holder->file.get());
  return raw;
}

// AWQ (GEMM) checkpoints (formats.md 5.3) hold the same codes, scales and zero points as a GPTQ
// checkpoint in another packing: each layer is repacked into the gptq_v2 layout (zeros stored as
// they are, no g_idx) on load, losslessly, and read from there.
void attach_awq_linears(Checkpoint& ck, const std::string& config_path, const nlohmann::json& q) {
  const auto number = [&](std::initializer_list<const char*> keys, int64_t fallback) {
    for (const char* key : keys) {
      if (!q.contains(key)) continue;
      if (!q[key].is_number_integer()) throw file_error(config_path, std::string("quantization_config.") + key + " is not an integer");
      return q[key].get<int64_t>();
    }
    return fallback;
  };
  const int64_t bits = number({"bits", "w_bit"}, 4), group = number({"group_size", "q_group_size"}, 128);
  if (bits != 4) throw file_error(config_path, "AWQ with " + std::to_string(bits) + " bits is not supported (4)");
  if (group == 0 || group < -1) throw file_error(config_path, "quantization_config.group_size must be -1 or positive");
  const std::string version = q.contains("version") && q["version"].is_string() ? q["version"].get<std::string>() : "gemm";
  if (version != "gemm" && version != "GEMM")
    throw file_error(config_path, "AWQ version '" + version + "' is not supported (gemm)");
  if (q.contains("zero_point") && q["zero_point"].is_boolean() && !q["zero_point"].get<bool>())
    throw file_error(config_path, "AWQ without zero points (zero_point: false) is not supported");

  std::vector<std::string> modules;
  for (const auto& [name, raw] : ck.tensors)
    if (ends_with(name, ".qweight")) modules.push_back(name.substr(0, name.size() - 8));
  for (const std::string& module : modules) {
    const std::string where = "AWQ layer " + module + ": ";
    const auto take = [&](const std::string& suffix, TensorType type) {
      const auto it = ck.tensors.find(module + suffix);
      if (it == ck.tensors.end()) throw file_error(ck.path, where + "no " + suffix.substr(1));
      RawTensor raw = it->second;
      if (raw.type != type || raw.shape.size() != 2u)
        throw file_error(raw.file, "tensor " + raw.name + " has the wrong dtype or rank for AWQ");
      ck.tensors.erase(it);
      return raw;
    };
    const RawTensor qweight = take(".qweight", TensorType::I32), qzeros = take(".qzeros", TensorType::I32);
    GptqPackedLinear l;
    l.scales = take(".scales", TensorType::F16);
    l.bits = 4;
    l.group_size = group;
    l.zero_minus_one = false;
    l.in_features = qweight.shape[0];
    l.out_features = qweight.shape[1] * 8;
    const int64_t groups = group > 0 ? (l.in_features + group - 1) / group : 1;
    if (l.scales.shape != std::vector<int64_t>{groups, l.out_features} ||
        qzeros.shape != std::vector<int64_t>{groups, qweight.shape[1]})
      throw file_error(ck.path, where + "qweight, qzeros and scales shapes do not agree with group size " +
                                    std::to_string(group));
    if (l.in_features % 32 != 0 || l.out_features % 32 != 0)
      throw file_error(ck.path, where + std::to_string(l.out_features) + " x " + std::to_string(l.in_features) +
                                    " is not supported (both sizes must be multiples of 32)");
    const at::Tensor codes = unpack_awq_columns(decode_raw(qweight));  // [in, out]
    const at::Tensor zeros = unpack_awq_columns(decode_raw(qzeros));   // [groups, out]
    l.qweight = owned_int32(pack_gptq_rows(codes, 4), qweight, module + ".qweight");
    l.qzeros = owned_int32(pack_gptq_rows(zeros.t(), 4).t(), qzeros, module + ".qzeros");
    RawTensor weight;
    weight.name = module + ".weight";
    weight.file = qweight.file;
    weight.shape = {l.out_features, l.in_features};
    ck.tensors[weight.name] = weight;
    ck.gptq_linears[weight.name] = l;
  }
  ck.metadata["awq"] = "4-bit, group " + std::to_string(group) + ", gemm, " + std::to_string(modules.size()) + " layers";
}

}  // namespace

void attach_gptq_linears(Checkpoint& ck, const std::string& config_path) {
  nlohmann::json config;
  try {
    config = nlohmann::json::parse(read_text_file(config_path));
  } catch (const nlohmann::json::exception& e) {
    throw file_error(config_path, std::string("is not valid JSON: ") + e.what());
  }
  if (!config.is_object() || !config.contains("quantization_config")) return;
  const nlohmann::json& q = config["quantization_config"];
  if (!q.is_object()) throw file_error(config_path, "quantization_config is not an object");
  const std::string method = q.value("quant_method", std::string());
  if (method == "compressed-tensors") return;  // attach_sparse_linears reads those
  if (method == "awq") return attach_awq_linears(ck, config_path, q);
  if (method != "gptq") {
    if (!method.empty())
      throw file_error(config_path,
                       "quantization method '" + method + "' is not supported (gptq, awq, compressed-tensors)");
    return;
  }
  const auto number = [&](const char* key, int64_t fallback) {
    if (!q.contains(key)) return fallback;
    if (!q[key].is_number_integer()) throw file_error(config_path, std::string("quantization_config.") + key + " is not an integer");
    return q[key].get<int64_t>();
  };
  const int64_t bits = number("bits", 4), group = number("group_size", 128);
  if (bits != 2 && bits != 3 && bits != 4 && bits != 8)
    throw file_error(config_path, "GPTQ with " + std::to_string(bits) + " bits is not supported (2, 3, 4, 8)");
  if (group == 0 || group < -1) throw file_error(config_path, "quantization_config.group_size must be -1 or positive");
  std::string format = "gptq";
  for (const char* key : {"checkpoint_format", "format"})
    if (q.contains(key) && q[key].is_string()) format = q[key].get<std::string>();
  if (format != "gptq" && format != "gptq_v2")
    throw file_error(config_path, "GPTQ checkpoint format '" + format + "' is not supported (gptq, gptq_v2)");

  std::vector<std::string> modules;
  for (const auto& [name, raw] : ck.tensors)
    if (ends_with(name, ".qweight")) modules.push_back(name.substr(0, name.size() - 8));
  for (const std::string& module : modules) {
    GptqPackedLinear l;
    const auto take = [&](const std::string& suffix, TensorType type, bool required) {
      const auto it = ck.tensors.find(module + suffix);
      if (it == ck.tensors.end()) {
        if (required) throw file_error(ck.path, "GPTQ layer " + module + " has no " + suffix.substr(1));
        return RawTensor{};
      }
      RawTensor raw = it->second;
      if (raw.type != type || raw.shape.size() != (suffix == ".g_idx" ? 1u : 2u))
        throw file_error(raw.file, "tensor " + raw.name + " has the wrong dtype or rank for GPTQ");
      ck.tensors.erase(it);
      return raw;
    };
    l.qweight = take(".qweight", TensorType::I32, true);
    l.qzeros = take(".qzeros", TensorType::I32, true);
    l.scales = take(".scales", TensorType::F16, true);
    l.g_idx = take(".g_idx", TensorType::I32, false);
    l.bits = int(bits);
    l.group_size = group;
    l.zero_minus_one = format == "gptq";
    l.symmetric = q.value("sym", false);
    l.out_features = l.qweight.shape[1];
    l.in_features = l.qweight.shape[0] * 32 / bits;
    const int64_t groups = group > 0 ? (l.in_features + group - 1) / group : 1;
    const std::string where = "GPTQ layer " + module + ": ";
    if (l.qweight.shape[0] % bits != 0 || l.out_features % 32 != 0 ||
        l.scales.shape != std::vector<int64_t>{groups, l.out_features} ||
        l.qzeros.shape != std::vector<int64_t>{groups, l.out_features * bits / 32} ||
        (l.g_idx.data && l.g_idx.shape != std::vector<int64_t>{l.in_features}))
      throw file_error(ck.path, where + "qweight, qzeros, scales and g_idx shapes do not agree with " +
                                    std::to_string(bits) + " bits and group size " + std::to_string(group));
    if (l.g_idx.data) {
      const at::Tensor g = decode_raw(l.g_idx);
      if (g.min().item<int64_t>() < 0 || g.max().item<int64_t>() >= groups)
        throw file_error(ck.path, where + "g_idx has values outside 0.." + std::to_string(groups - 1));
    }
    RawTensor weight;
    weight.name = module + ".weight";
    weight.file = l.qweight.file;
    weight.shape = {l.out_features, l.in_features};
    ck.tensors[weight.name] = weight;
    ck.gptq_linears[weight.name] = l;
  }
  ck.metadata["gptq"] = std::to_string(bits) + "-bit, group " + std::to_string(group) + ", " + format + ", " +
                        std::to_string(modules.size()) + " layers";
}

GptqCodes unpack_gptq_linear(const GptqPackedLinear& l) {
  GptqCodes out;
  out.codes = unpack_gptq_rows(decode_raw(l.qweight), l.bits).t().to(at::kByte).contiguous();  // [out, in]
  at::Tensor zeros = unpack_gptq_rows(decode_raw(l.qzeros).t().contiguous(), l.bits);            // [out, groups]
  if (l.zero_minus_one) zeros = zeros + 1;
  out.zeros = zeros.to(at::kInt).contiguous();
  out.scales = decode_raw(l.scales).t().to(at::kHalf).contiguous();
  const at::Tensor plain = at::div(at::arange(l.in_features, at::kLong), l.group_size > 0 ? l.group_size : l.in_features,
                                   "floor");
  const at::Tensor g_idx = l.g_idx.data ? decode_raw(l.g_idx).to(at::kLong) : plain;
  out.act_order = !at::equal(g_idx, plain);
  out.g_idx = g_idx.to(at::kInt).contiguous();
  return out;
}

at::Tensor dequantize_gptq(const GptqPackedLinear& l) {
  const GptqCodes c = unpack_gptq_linear(l);
  const at::Tensor g_idx = c.g_idx.to(at::kLong);
  const at::Tensor scale = c.scales.to(at::kFloat).index_select(1, g_idx);
  const at::Tensor zero = c.zeros.to(at::kFloat).index_select(1, g_idx);
  return scale * (c.codes.to(at::kFloat) - zero);
}

}  // namespace llmpress
