#include "llmpress/pipeline/recipe.h"

#include <yaml-cpp/yaml.h>

#include <cstdlib>
#include <set>

#include "llmpress/core/error.h"
#include "llmpress/data/text.h"

namespace llmpress {

std::string SourceLine::describe() const {
  if (file.empty()) return "the command line";
  return file + ":" + std::to_string(line);
}

namespace {

class RecipeReader {
 public:
  explicit RecipeReader(std::string file) : file_(std::move(file)) {}

  SourceLine at(const YAML::Node& node) const { return {file_, node.Mark().line + 1}; }
  [[noreturn]] void fail(const YAML::Node& node, const std::string& problem) const {
    throw Error(at(node).describe() + ": " + problem);
  }

  void expect_map(const YAML::Node& node, const std::string& what, const std::set<std::string>& keys) const {
    if (!node.IsMap()) fail(node, what + " must be a mapping of keys to values");
    for (const auto& item : node) {
      const std::string key = item.first.as<std::string>();
      if (!keys.count(key)) {
        std::string known;
        for (const std::string& k : keys) known += (known.empty() ? "" : ", ") + k;
        fail(item.first, "unknown key '" + key + "' in " + what + " (known: " + known + ")");
      }
    }
  }

  std::string text(const YAML::Node& node, const std::string& what) const {
    if (!node.IsScalar()) fail(node, what + " must be a single value");
    return node.as<std::string>();
  }

  int64_t integer(const YAML::Node& node, const std::string& what) const {
    const std::string s = text(node, what);
    char* end = nullptr;
    const long long v = std::strtoll(s.c_str(), &end, 10);
    if (s.empty() || *end != '\0') fail(node, what + " must be an integer, got '" + s + "'");
    return v;
  }

  std::vector<std::string> strings(const YAML::Node& node, const std::string& what) const {
    if (node.IsScalar()) return {node.as<std::string>()};
    if (!node.IsSequence()) fail(node, what + " must be a list of strings");
    std::vector<std::string> out;
    for (const auto& item : node) out.push_back(text(item, what + " entry"));
    return out;
  }

  // A stage option as JSON: integers, numbers and booleans by their YAML spelling, lists of
  // scalars, or strings (quoted scalars always stay strings).
  nlohmann::json value(const YAML::Node& node, const std::string& what) const {
    if (node.IsSequence()) {
      nlohmann::json list = nlohmann::json::array();
      for (const auto& item : node) list.push_back(value(item, what + " entry"));
      return list;
    }
    if (!node.IsScalar()) fail(node, what + " must be a value or a list of values");
    const std::string s = node.as<std::string>();
    if (node.Tag() == "!") return s;  // quoted
    if (s == "true" || s == "yes" || s == "on") return true;
    if (s == "false" || s == "no" || s == "off") return false;
    char* end = nullptr;
    const long long i = std::strtoll(s.c_str(), &end, 10);
    if (!s.empty() && *end == '\0') return int64_t(i);
    const double d = std::strtod(s.c_str(), &end);
    if (!s.empty() && *end == '\0') return d;
    return s;
  }

  StageSpec stage(const YAML::Node& node, size_t index) const {
    const std::string what = "stage " + std::to_string(index + 1);
    if (!node.IsMap()) fail(node, what + " must be a mapping (method: NAME, options...)");
    StageSpec spec;
    spec.where = at(node);
    if (!node["method"]) fail(node, what + " has no 'method'");
    for (const auto& item : node) {
      const std::string key = item.first.as<std::string>();
      if (key == "method") spec.method = text(item.second, what + " method");
      else if (key == "targets") spec.targets = strings(item.second, what + " targets");
      else if (key == "ignore") spec.ignore = strings(item.second, what + " ignore");
      else {
        if (spec.options.contains(key)) fail(item.first, what + ": option '" + key + "' given twice");
        spec.options[key] = value(item.second, what + " option " + key);
        spec.option_lines[key] = at(item.first);
      }
    }
    return spec;
  }

  Recipe recipe(const YAML::Node& root) const {
    Recipe r;
    r.where = at(root);
    if (!root.IsMap()) fail(root, "a recipe must be a mapping with model, calibration, stages and output");
    expect_map(root, "the recipe", {"model", "tokenizer", "calibration", "stages", "output"});
    if (root["model"]) r.model = text(root["model"], "model");
    if (root["tokenizer"]) r.tokenizer = text(root["tokenizer"], "tokenizer");
    if (const YAML::Node c = root["calibration"]) {
      if (c.IsScalar()) {
        r.calibration.file = c.as<std::string>();
      } else {
        expect_map(c, "calibration", {"file", "nsamples", "seqlen", "seed"});
        if (c["file"]) r.calibration.file = text(c["file"], "calibration file");
        if (c["nsamples"]) r.calibration.nsamples = integer(c["nsamples"], "calibration nsamples");
        if (c["seqlen"]) r.calibration.seqlen = integer(c["seqlen"], "calibration seqlen");
        if (c["seed"]) r.calibration.seed = uint64_t(integer(c["seed"], "calibration seed"));
      }
    }
    if (const YAML::Node s = root["stages"]) {
      if (!s.IsSequence()) fail(s, "stages must be a list (- method: NAME ...)");
      for (size_t i = 0; i < s.size(); ++i) r.stages.push_back(stage(s[i], i));
    }
    if (const YAML::Node o = root["output"]) {
      r.output.where = at(o);
      if (o.IsScalar()) {
        r.output.path = o.as<std::string>();
      } else {
        expect_map(o, "output", {"path", "format", "type", "tensor_type"});
        if (o["path"]) r.output.path = text(o["path"], "output path");
        if (o["format"]) r.output.format = text(o["format"], "output format");
        if (o["type"]) r.output.type = text(o["type"], "output type");
        if (o["tensor_type"]) r.output.tensor_types = strings(o["tensor_type"], "output tensor_type");
      }
    }
    return r;
  }

 private:
  std::string file_;
};

}  // namespace

Recipe parse_recipe(const std::string& text, const std::string& file) {
  YAML::Node root;
  try {
    root = YAML::Load(text);
  } catch (const YAML::Exception& e) {
    throw Error(file + ":" + std::to_string(e.mark.line + 1) + ": not valid YAML (" + e.msg + ")");
  }
  try {
    return RecipeReader(file).recipe(root);
  } catch (const YAML::Exception& e) {
    throw Error(file + ":" + std::to_string(e.mark.line + 1) + ": " + e.msg);
  }
}

Recipe load_recipe(const std::string& path) { return parse_recipe(read_text_file(path), path); }

nlohmann::json recipe_to_json(const Recipe& r) {
  nlohmann::json j = nlohmann::json::object();
  j["model"] = r.model;
  if (!r.tokenizer.empty()) j["tokenizer"] = r.tokenizer;
  if (!r.calibration.file.empty())
    j["calibration"] = {{"file", r.calibration.file}, {"nsamples", r.calibration.nsamples},
                        {"seqlen", r.calibration.seqlen}, {"seed", r.calibration.seed}};
  j["stages"] = nlohmann::json::array();
  for (const StageSpec& s : r.stages) {
    nlohmann::json stage = {{"method", s.method}};
    if (!s.targets.empty()) stage["targets"] = s.targets;
    if (!s.ignore.empty()) stage["ignore"] = s.ignore;
    for (const auto& [key, value] : s.options.items()) stage[key] = value;
    j["stages"].push_back(stage);
  }
  nlohmann::json out = {{"path", r.output.path}};
  if (!r.output.format.empty()) out["format"] = r.output.format;
  if (!r.output.type.empty()) out["type"] = r.output.type;
  if (!r.output.tensor_types.empty()) out["tensor_type"] = r.output.tensor_types;
  j["output"] = out;
  // Paths and values may hold bytes that are not UTF-8 (Linux file names are bytes): they become U+FFFD
  // here, so writing this provenance into an output never fails at the end of a job.
  return nlohmann::json::parse(j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
}

namespace {

void emit_json(YAML::Emitter& out, const nlohmann::json& value) {
  if (value.is_object()) {
    out << YAML::BeginMap;
    for (const auto& [key, item] : value.items()) {
      out << YAML::Key << key << YAML::Value;
      emit_json(out, item);
    }
    out << YAML::EndMap;
  } else if (value.is_array()) {
    out << YAML::Flow << YAML::BeginSeq;
    for (const auto& item : value) emit_json(out, item);
    out << YAML::EndSeq;
  } else if (value.is_string()) {
    // Quoted so that strings such as "2:4" or "0.5" read back as strings.
    out << YAML::SingleQuoted << value.get<std::string>();
  } else if (value.is_boolean()) {
    out << (value.get<bool>() ? "true" : "false");
  } else if (value.is_number_integer()) {
    out << value.get<int64_t>();
  } else if (value.is_number()) {
    out << value.dump();
  } else {
    out << YAML::Null;
  }
}

}  // namespace

std::string recipe_to_yaml(const Recipe& recipe) {
  const nlohmann::json j = recipe_to_json(recipe);
  YAML::Emitter out;
  out << YAML::BeginMap;
  for (const char* key : {"model", "tokenizer", "calibration"}) {
    if (!j.contains(key)) continue;
    out << YAML::Key << key << YAML::Value;
    emit_json(out, j[key]);
  }
  out << YAML::Key << "stages" << YAML::Value << YAML::BeginSeq;
  for (const StageSpec& stage : recipe.stages) {
    out << YAML::BeginMap << YAML::Key << "method" << YAML::Value << stage.method;
    for (const auto& [key, list] : {std::pair{"targets", &stage.targets}, std::pair{"ignore", &stage.ignore}}) {
      if (list->empty()) continue;
      out << YAML::Key << key << YAML::Value;
      emit_json(out, *list);
    }
    for (const auto& [k, v] : stage.options.items()) {
      out << YAML::Key << k << YAML::Value;
      emit_json(out, v);
    }
    out << YAML::EndMap;
  }
  out << YAML::EndSeq;
  out << YAML::Key << "output" << YAML::Value;
  emit_json(out, j["output"]);
  out << YAML::EndMap;
  return std::string("# llmpress recipe: run it with  llmpress run FILE\n") + out.c_str() + "\n";
}

}  // namespace llmpress
