#include "llmpress/pipeline/method.h"

#include <map>

#include "llmpress/core/error.h"
#include "llmpress/core/json_excerpt.h"

namespace llmpress {

namespace {

std::vector<MethodSpec>& registry() {
  static std::vector<MethodSpec> methods;
  return methods;
}

const char* type_name(OptionType type) {
  switch (type) {
    case OptionType::Integer: return "an integer";
    case OptionType::Number: return "a number";
    case OptionType::Boolean: return "true or false";
    case OptionType::String: return "a string";
    case OptionType::StringList: return "a list of strings";
  }
  return "?";
}

bool fits(const nlohmann::json& v, OptionType type) {
  switch (type) {
    case OptionType::Integer: return v.is_number_integer();
    case OptionType::Number: return v.is_number();
    case OptionType::Boolean: return v.is_boolean();
    case OptionType::String: return v.is_string();
    case OptionType::StringList:
      if (!v.is_array()) return false;
      for (const auto& item : v)
        if (!item.is_string()) return false;
      return true;
  }
  return false;
}

}  // namespace

MethodRegistration::MethodRegistration(MethodSpec spec) { registry().push_back(std::move(spec)); }

const MethodSpec& find_method(const std::string& name) {
  for (const MethodSpec& m : registry())
    if (m.name == name) return m;
  std::string known;
  for (const MethodSpec& m : registry()) known += (known.empty() ? "" : ", ") + m.name;
  throw Error("unknown method '" + name + "' (known: " + known + ")");
}

std::vector<const MethodSpec*> registered_methods(const std::string& family) {
  std::vector<const MethodSpec*> out;
  for (const MethodSpec& m : registry())
    if (family.empty() || m.family == family) out.push_back(&m);
  return out;
}

std::string method_names(const std::string& family) {
  std::string names;
  for (const MethodSpec* m : registered_methods(family)) names += (names.empty() ? "" : ", ") + m->name;
  return names;
}

StageOptions::StageOptions(const MethodSpec& method, const StageSpec& stage)
    : method_(method.name), values_(nlohmann::json::object()), stage_(&stage) {
  std::map<std::string, const OptionSpec*> specs;
  for (const OptionSpec& o : method.options) {
    specs[o.name] = &o;
    values_[o.name] = o.default_value;
  }
  for (const auto& [key, value] : stage.options.items()) {
    const auto it = specs.find(key);
    if (it == specs.end()) {
      std::string known;
      for (const OptionSpec& o : method.options) known += (known.empty() ? "" : ", ") + o.name;
      throw error(key, "method " + method.name + " has no option '" + key + "' (its options: " + known + ")");
    }
    nlohmann::json v = value;
    if (it->second->type == OptionType::StringList && v.is_string()) v = nlohmann::json::array({v});
    if (it->second->type == OptionType::String && v.is_number()) v = v.dump();  // e.g. a bare 8 for a type
    if (!fits(v, it->second->type))
      throw error(key, "option '" + key + "' of " + method.name + " must be " + type_name(it->second->type) +
                           ", got " + json_excerpt(value));
    values_[key] = v;
    given_.insert(key);
  }
}

Error StageOptions::error(const std::string& problem) const {
  return Error(stage_->where.file.empty() ? problem : stage_->where.describe() + ": " + problem);
}

Error StageOptions::error(const std::string& name, const std::string& problem) const {
  if (stage_->where.file.empty()) {  // built from a command line: name the flag
    std::string flag = "--" + name;
    for (char& c : flag) c = c == '_' ? '-' : c;
    return Error(flag + ": " + problem);
  }
  const auto it = stage_->option_lines.find(name);
  const SourceLine& where = it != stage_->option_lines.end() ? it->second : stage_->where;
  return Error(where.describe() + ": " + problem);
}

const nlohmann::json& StageOptions::value(const std::string& name) const {
  if (!values_.contains(name)) throw Error("method " + method_ + " reads an option '" + name + "' it does not declare");
  return values_.at(name);
}

int64_t StageOptions::integer(const std::string& name) const { return value(name).get<int64_t>(); }
double StageOptions::number(const std::string& name) const { return value(name).get<double>(); }
bool StageOptions::flag(const std::string& name) const { return value(name).get<bool>(); }
std::string StageOptions::text(const std::string& name) const {
  const nlohmann::json& v = value(name);
  return v.is_null() ? "" : v.get<std::string>();
}
std::vector<std::string> StageOptions::list(const std::string& name) const {
  const nlohmann::json& v = value(name);
  return v.is_null() ? std::vector<std::string>{} : v.get<std::vector<std::string>>();
}

}  // namespace llmpress
