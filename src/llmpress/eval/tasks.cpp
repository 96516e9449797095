#include "llmpress/eval/tasks.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <random>
#include <sstream>

#include "llmpress/core/error.h"
#include "llmpress/core/json_excerpt.h"
#include "llmpress/data/text.h"

namespace llmpress {

namespace {

std::string rtrim(const std::string& text) {
  const size_t end = text.find_last_not_of(" \t\r\n");
  return end == std::string::npos ? "" : text.substr(0, end + 1);
}

bool ends_with_marker(const std::string& prompt) {
  const std::string trimmed = rtrim(prompt);
  const std::string marker = kAnswerMarker;
  return trimmed.size() >= marker.size() && trimmed.compare(trimmed.size() - marker.size(), marker.size(), marker) == 0;
}

std::string string_field(const nlohmann::json& record, const char* key, const std::string& where, bool required) {
  if (!record.contains(key)) {
    if (required) throw Error(where + ": the record has no \"" + key + "\"");
    return "";
  }
  if (!record[key].is_string())
    throw Error(where + ": \"" + key + "\" must be a string, not " + json_excerpt(record[key]));
  return record[key].get<std::string>();
}

Demo parse_demo(const nlohmann::json& demo, const std::string& where) {
  if (!demo.is_object()) throw Error(where + ": each of \"demos\" must be an object, not " + json_excerpt(demo));
  return {string_field(demo, "prompt", where, true), string_field(demo, "answer", where, true),
          string_field(demo, "rationale", where, false)};
}

TaskItem parse_item(const nlohmann::json& record, const std::string& where) {
  if (!record.is_object()) throw Error(where + ": a task item must be a JSON object, not " + json_excerpt(record));
  TaskItem item;
  item.source = where;
  item.task = string_field(record, "task", where, true);
  if (item.task.empty()) throw Error(where + ": \"task\" is empty");
  item.prompt = string_field(record, "prompt", where, true);
  item.rationale = string_field(record, "rationale", where, false);
  const bool generative = record.contains("answer"), choice = record.contains("choices");
  if (generative == choice)
    throw Error(where + ": give either \"answer\" (generative) or \"choices\" and \"label\" (multiple choice)");
  if (generative) {
    item.answer = string_field(record, "answer", where, true);
  } else {
    const nlohmann::json& choices = record["choices"];
    if (!choices.is_array() || choices.size() < 2)
      throw Error(where + ": \"choices\" must be a list of at least two strings, not " + json_excerpt(choices));
    for (const nlohmann::json& c : choices) {
      if (!c.is_string()) throw Error(where + ": every choice must be a string, not " + json_excerpt(c));
      item.choices.push_back(c.get<std::string>());
    }
    if (!record.contains("label") || !record["label"].is_number_integer())
      throw Error(where + ": a multiple-choice item needs an integer \"label\" (the index of the right choice)");
    item.label = record["label"].get<int64_t>();
    if (item.label < 0 || item.label >= int64_t(item.choices.size()))
      throw Error(where + ": \"label\" " + std::to_string(item.label) + " is not an index of the " +
                  std::to_string(item.choices.size()) + " choices");
  }
  if (record.contains("demos")) {
    if (!record["demos"].is_array()) throw Error(where + ": \"demos\" must be a list, not " + json_excerpt(record["demos"]));
    for (const nlohmann::json& demo : record["demos"]) item.demos.push_back(parse_demo(demo, where));
  }
  return item;
}

}  // namespace

Demo TaskItem::as_demo() const {
  return {prompt, multiple_choice() ? choices[size_t(label)] : answer, rationale};
}

std::vector<TaskItem> read_task_file(const std::string& path) {
  std::vector<TaskItem> items;
  for_each_json_line(path, [&](const nlohmann::json& record, const std::string& where) {
    items.push_back(parse_item(record, where));
  });
  if (items.empty()) throw Error(path + ": no task items (one JSON object per line, see docs/tasks.md)");
  return items;
}

std::string response_text(const std::string& prompt, const std::string& answer, const std::string& rationale,
                          bool with_rationale) {
  if (ends_with_marker(prompt)) return " " + answer;
  std::string text = with_rationale && !rationale.empty() ? rationale + "\n" : "";
  return text + kAnswerMarker + " " + answer;
}

std::string normalize_answer(const std::string& text) {
  std::string out;
  bool space = false;
  for (char c : text) {
    if (c == ' ' || c == '\t' || c == '\r' || c == '\n') {
      space = !out.empty();
    } else {
      if (space) out += ' ';
      out += c;
      space = false;
    }
  }
  if (!out.empty() && out.back() == '.') out.pop_back();
  return out;
}

std::string extract_answer(const std::string& generation) {
  const size_t marker = generation.rfind(kAnswerMarker);
  std::string answer = marker == std::string::npos ? generation : generation.substr(marker + std::string(kAnswerMarker).size());
  const size_t first = answer.find_first_not_of(" \t\r\n");
  answer = first == std::string::npos ? "" : answer.substr(first);
  return normalize_answer(answer.substr(0, answer.find('\n')));
}

std::string fewshot_prompt(const TaskItem& item, const std::vector<Demo>& demos, bool with_rationale) {
  std::string text;
  for (const Demo& demo : demos)
    text += demo.prompt + response_text(demo.prompt, demo.answer, demo.rationale, with_rationale) + kDemoDelimiter;
  return text + item.prompt;
}

std::vector<Demo> choose_demos(const std::vector<TaskItem>& items, size_t index, int64_t shots, uint64_t seed) {
  const TaskItem& item = items.at(index);
  if (shots < 0) return item.demos;
  std::vector<Demo> demos(item.demos.begin(), item.demos.begin() + std::min<int64_t>(shots, int64_t(item.demos.size())));
  if (int64_t(demos.size()) == shots) return demos;
  std::vector<size_t> pool;
  for (size_t i = 0; i < items.size(); ++i)
    if (i != index && items[i].task == item.task) pool.push_back(i);
  // A draw per item (seed and index), so an item's prompt does not depend on which others are evaluated with it.
  std::mt19937_64 rng(seed * 0x9E3779B97F4A7C15ULL + index);
  for (size_t i = 0; i < pool.size() && int64_t(demos.size()) < shots; ++i) {
    std::swap(pool[i], pool[i + size_t(rng() % (pool.size() - i))]);
    demos.push_back(items[pool[i]].as_demo());
  }
  if (int64_t(demos.size()) < shots)
    throw Error(item.source + ": " + std::to_string(shots) + " demonstrations asked for, but task '" + item.task +
                "' has only " + std::to_string(demos.size()) + " besides this item");
  return demos;
}

}  // namespace llmpress
