#include "llmpress/model/weight_kinds.h"

#include "llmpress/core/error.h"
#include "llmpress/model/linear.h"

namespace llmpress {

namespace {

std::map<std::string, WeightRestorer>& registry() {
  static std::map<std::string, WeightRestorer> kinds;
  return kinds;
}

}  // namespace

WeightKindRegistration::WeightKindRegistration(const std::string& kind, WeightRestorer restorer) {
  registry()[kind] = std::move(restorer);
}

std::shared_ptr<LinearWeight> restore_weight(const WeightState& state) {
  const auto it = registry().find(state.kind);
  if (it == registry().end()) {
    std::string known;
    for (const auto& [name, _] : registry()) known += (known.empty() ? "" : ", ") + name;
    throw Error("saved linear weight of unknown kind '" + state.kind + "' (known: " + known + ")");
  }
  try {
    return it->second(state);
  } catch (const nlohmann::json::exception& e) {
    throw Error("saved " + state.kind + " weight has bad metadata: " + e.what());
  }
}

std::vector<std::string> registered_weight_kinds() {
  std::vector<std::string> kinds;
  for (const auto& [name, _] : registry()) kinds.push_back(name);
  return kinds;
}

void WeightState::put(const std::string& key, const LinearWeight& inner) {
  WeightState saved = inner.save();
  meta[key] = {{"kind", saved.kind}, {"meta", saved.meta}};
  for (auto& [name, tensor] : saved.tensors) tensors[key + "." + name] = std::move(tensor);
}

std::shared_ptr<LinearWeight> WeightState::take(const std::string& key) const {
  if (!meta.contains(key) || !meta[key].is_object() || !meta[key].contains("kind"))
    throw Error("saved " + kind + " weight lacks its part '" + key + "'");
  WeightState inner;
  inner.kind = meta[key]["kind"].get<std::string>();
  inner.meta = meta[key].value("meta", nlohmann::json::object());
  const std::string prefix = key + ".";
  for (const auto& [name, tensor] : tensors)
    if (name.compare(0, prefix.size(), prefix) == 0) inner.tensors[name.substr(prefix.size())] = tensor;
  return restore_weight(inner);
}

const at::Tensor& WeightState::tensor(const std::string& name) const {
  const auto it = tensors.find(name);
  if (it == tensors.end()) throw Error("saved " + kind + " weight lacks tensor '" + name + "'");
  return it->second;
}

}  // namespace llmpress
