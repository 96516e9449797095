#pragma once
// A JSON value as an error message shows it: a scalar as written (cut short), a list or an object by
// its size. Never recursive and never long: a value nested 100,000 deep or 100 KB wide in a hostile
// file must give a one-line error, not a stack overflow or a page of brackets.
#include <nlohmann/json.hpp>

#include <string>

namespace llmpress {

inline std::string json_excerpt(const nlohmann::json& value) {
  if (value.is_array()) return "a list of " + std::to_string(value.size()) + " values";
  if (value.is_object()) return "an object of " + std::to_string(value.size()) + " keys";
  std::string text = value.dump();
  constexpr size_t kMax = 60;
  if (text.size() > kMax) text = text.substr(0, kMax) + "... (" + std::to_string(text.size()) + " characters)";
  return text;
}

}  // namespace llmpress
