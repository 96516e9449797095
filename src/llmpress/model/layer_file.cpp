#include "llmpress/model/layer_file.h"

#include "llmpress/core/error.h"
#include "llmpress/io/tensor_file.h"

namespace llmpress {

void save_layer_file(const std::string& path, const DecoderLayer& layer) {
  TensorMap tensors = {{"input_norm", layer.input_norm}, {"post_attention_norm", layer.post_attention_norm}};
  nlohmann::json linears = nlohmann::json::object();
  for (const std::string& name : DecoderLayer::linear_names()) {
    const Linear& linear = layer.linear(name);
    WeightState state = linear.weight->save();
    linears[name] = {{"kind", state.kind}, {"meta", state.meta}};
    for (auto& [key, tensor] : state.tensors) tensors[name + "/" + key] = std::move(tensor);
    if (linear.bias.defined()) tensors[name + ".bias"] = linear.bias;
  }
  save_tensor_file(path, tensors, {{"linears", linears}});
}

DecoderLayer load_layer_file(const std::string& path, const at::Device& device) {
  nlohmann::json metadata;
  TensorMap tensors = load_tensor_file(path, device, &metadata);
  try {
    DecoderLayer layer;
    layer.input_norm = tensors.at("input_norm");
    layer.post_attention_norm = tensors.at("post_attention_norm");
    for (const std::string& name : DecoderLayer::linear_names()) {
      const nlohmann::json& info = metadata.at("linears").at(name);
      WeightState state{info.at("kind").get<std::string>(), info.value("meta", nlohmann::json::object()), {}};
      const std::string prefix = name + "/";
      for (const auto& [key, tensor] : tensors)
        if (key.compare(0, prefix.size(), prefix) == 0) state.tensors[key.substr(prefix.size())] = tensor;
      Linear& linear = layer.linear(name);
      linear.weight = restore_weight(state);
      if (tensors.count(name + ".bias")) linear.bias = tensors.at(name + ".bias");
    }
    return layer;
  } catch (const Error& e) {
    throw file_error(path, e.what());
  } catch (const std::exception& e) {
    throw file_error(path, std::string("incomplete layer file (") + e.what() + ")");
  }
}

}  // namespace llmpress
