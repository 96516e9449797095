#pragma once
// Every linear weight kind saves itself as a WeightState and is restored through one registry, so
// resume files, stage outputs and exporters handle every kind the same way. A kind registers its
// restorer in its own source file:
//   static const WeightKindRegistration registration("int", [](const WeightState& s) { ... });
#include <ATen/ATen.h>
#include <nlohmann/json.hpp>

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace llmpress {

class LinearWeight;

struct WeightState {
  std::string kind;                          // the registered kind name ("dense", "int", ...)
  nlohmann::json meta = nlohmann::json::object();  // small fields (bits, shapes, nested kinds)
  std::map<std::string, at::Tensor> tensors;

  // A weight held inside this one (a factor, the values of a sparse weight) under `key`: its
  // tensors are stored as "key.NAME" and its kind and meta as meta[key].
  void put(const std::string& key, const LinearWeight& inner);
  std::shared_ptr<LinearWeight> take(const std::string& key) const;
  // The tensor `name`, or an Error naming the kind and what is missing.
  const at::Tensor& tensor(const std::string& name) const;
};

using WeightRestorer = std::function<std::shared_ptr<LinearWeight>(const WeightState& state)>;

struct WeightKindRegistration {
  WeightKindRegistration(const std::string& kind, WeightRestorer restorer);
};

// Rebuilds a weight from its saved state; Error for an unknown kind or an incomplete state.
std::shared_ptr<LinearWeight> restore_weight(const WeightState& state);
std::vector<std::string> registered_weight_kinds();

}  // namespace llmpress
