#include "llmpress/data/skills.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <random>

#include "llmpress/core/error.h"

namespace llmpress {

namespace {

class Draw {
 public:
  explicit Draw(uint64_t seed) : rng_(seed) {}
  int64_t below(int64_t n) { return int64_t(rng_() % uint64_t(n)); }  // modulo bias negligible for 64-bit draws
  int64_t between(int64_t lo, int64_t hi) { return lo + below(hi - lo + 1); }
  std::string word(int64_t min_letters, int64_t max_letters, const std::string& alphabet) {
    std::string w;
    for (int64_t i = between(min_letters, max_letters); i > 0; --i) w += alphabet[size_t(below(int64_t(alphabet.size())))];
    return w;
  }

 private:
  std::mt19937_64 rng_;
};

const std::string kLetters = "abcdefghijklmnopqrstuvwxyz";

std::string spelled(const std::string& word) {
  std::string out;
  for (char c : word) out += (out.empty() ? "" : " ") + std::string(1, c);
  return out;
}

int digit(int64_t value, int64_t position) {
  for (int64_t i = 0; i < position; ++i) value /= 10;
  return int(value % 10);
}

int64_t digit_count(int64_t value) {
  int64_t n = 1;
  while (value >= 10) value /= 10, ++n;
  return n;
}

TaskItem arithmetic(Draw& draw, bool add, const SkillOptions& o) {
  int64_t limit = 1;
  for (int64_t i = 0; i < o.digits; ++i) limit *= 10;
  int64_t a = draw.below(limit), b = draw.below(limit);
  if (!add && a < b) std::swap(a, b);
  TaskItem item;
  item.task = add ? "addition" : "subtraction";
  item.prompt = std::string(add ? "Add: " : "Subtract: ") + std::to_string(a) + (add ? " + " : " - ") + std::to_string(b) + "\n";
  item.answer = std::to_string(add ? a + b : a - b);
  // Columns from the right, as done by hand.
  const int64_t columns = std::max(digit_count(a), digit_count(b));
  int carry = 0;
  for (int64_t i = 0; i < columns; ++i) {
    const int x = digit(a, i), y = digit(b, i);
    std::string step;
    if (add) {
      const int sum = x + y + carry;
      step = std::to_string(x) + " + " + std::to_string(y) + " + " + std::to_string(carry) + " = " + std::to_string(sum) +
             ", write " + std::to_string(sum % 10) + " carry " + std::to_string(sum / 10) + ".";
      carry = sum / 10;
    } else {
      const int top = x - carry;
      const int borrow = top < y ? 1 : 0;
      const int result = top + 10 * borrow - y;
      step = std::to_string(x + 10 * borrow) + " - " + std::to_string(y) + " - " + std::to_string(carry) + " = " +
             std::to_string(result) + ", write " + std::to_string(result) + " borrow " + std::to_string(borrow) + ".";
      carry = borrow;
    }
    item.rationale += (item.rationale.empty() ? "" : " ") + step;
  }
  if (add && carry) item.rationale += " write " + std::to_string(carry) + ".";
  return item;
}

TaskItem transform(Draw& draw, const std::string& family, const SkillOptions& o) {
  TaskItem item;
  item.task = family;
  std::string word = draw.word(o.min_letters, o.max_letters, kLetters);
  const std::string letters = "The letters are " + spelled(word) + ".";
  if (family == "reverse") {
    item.prompt = "Reverse the letters: " + word + "\n";
    item.answer = std::string(word.rbegin(), word.rend());
    item.rationale = letters + " Backwards they are " + spelled(item.answer) + ".";
  } else if (family == "sort") {
    item.prompt = "Sort the letters: " + word + "\n";
    item.answer = word;
    std::sort(item.answer.begin(), item.answer.end());
    item.rationale = letters + " In order they are " + spelled(item.answer) + ".";
  } else if (family == "count") {
    // Half of the questions ask for a letter the word holds, so that counts above zero are common.
    const char letter = draw.below(2) ? word[size_t(draw.below(int64_t(word.size())))] : kLetters[size_t(draw.below(26))];
    item.prompt = "Count the letter " + std::string(1, letter) + " in: " + word + "\n";
    std::string kept;
    for (char c : word)
      if (c == letter) kept += c;
    item.answer = std::to_string(kept.size());
    item.rationale = letters + " Keeping " + std::string(1, letter) + ": " + (kept.empty() ? "none" : spelled(kept)) + ".";
  } else {  // swapcase
    for (char& c : word)
      if (draw.below(2)) c = char(c - 'a' + 'A');
    item.prompt = "Swap the case: " + word + "\n";
    item.answer = word;
    for (char& c : item.answer) c = (c >= 'a' && c <= 'z') ? char(c - 'a' + 'A') : char(c - 'A' + 'a');
    item.rationale = "The letters are " + spelled(word) + ". Swapped they are " + spelled(item.answer) + ".";
  }
  return item;
}

// A fresh mapping of a few source letters to distinct targets, shown by demonstrations that between
// them use every source letter of the question.
TaskItem mapping(Draw& draw, const SkillOptions& o) {
  std::string sources = kLetters, targets = kLetters;
  for (size_t i = sources.size(); i > 1; --i) std::swap(sources[i - 1], sources[size_t(draw.below(int64_t(i)))]);
  for (size_t i = targets.size(); i > 1; --i) std::swap(targets[i - 1], targets[size_t(draw.below(int64_t(i)))]);
  const std::string alphabet = sources.substr(0, 4);
  const auto apply = [&](const std::string& word) {
    std::string out;
    for (char c : word) out += targets[alphabet.find(c)];
    return out;
  };
  const auto explain = [&](const std::string& word) {
    std::string steps;
    for (char c : word) steps += (steps.empty() ? "" : ", ") + std::string(1, c) + " is " + std::string(1, targets[alphabet.find(c)]);
    return steps + ".";
  };
  TaskItem item;
  item.task = "mapping";
  std::string seen;
  for (int64_t d = 0; d < o.mapping_demos; ++d) {
    const std::string word = draw.word(std::min<int64_t>(o.min_letters, 3), std::min<int64_t>(o.max_letters, 4), alphabet);
    seen += word;
    item.demos.push_back({"Map: " + word + "\n", apply(word), explain(word)});
  }
  std::string query;
  for (int attempt = 0; attempt < 100; ++attempt) {
    query = draw.word(std::min<int64_t>(o.min_letters, 3), std::min<int64_t>(o.max_letters, 4), alphabet);
    if (std::all_of(query.begin(), query.end(), [&](char c) { return seen.find(c) != std::string::npos; })) break;
  }
  for (char c : query)  // still unseen after 100 draws (very few demonstrations): show it
    if (seen.find(c) == std::string::npos) {
      item.demos.push_back({"Map: " + std::string(1, c) + "\n", apply(std::string(1, c)), explain(std::string(1, c))});
      seen += c;
    }
  item.prompt = "Map: " + query + "\n";
  item.answer = apply(query);
  item.rationale = explain(query);
  return item;
}

}  // namespace

const std::vector<std::string>& skill_families() {
  static const std::vector<std::string> families = {"addition", "subtraction", "reverse", "sort", "count", "swapcase", "mapping"};
  return families;
}

std::vector<TaskItem> make_skill_items(const std::string& family, int64_t count, const SkillOptions& options) {
  const auto& families = skill_families();
  const auto known = std::find(families.begin(), families.end(), family);
  if (known == families.end()) {
    std::string list;
    for (const std::string& f : families) list += (list.empty() ? "" : ", ") + f;
    throw Error("no task family '" + family + "' (families: " + list + ")");
  }
  if (options.digits < 1 || options.digits > 17) throw Error("--digits must be 1..17");
  if (options.min_letters < 1 || options.max_letters < options.min_letters)
    throw Error("word lengths need 1 <= --min-letters <= --max-letters");
  if (options.mapping_demos < 1) throw Error("a mapping needs at least one demonstration");
  // One stream per family, so that adding a family to a run does not change the others' items.
  Draw draw(options.seed * 0x9E3779B97F4A7C15ULL + uint64_t(known - families.begin()));
  std::vector<TaskItem> items;
  for (int64_t i = 0; i < count; ++i) {
    if (family == "addition" || family == "subtraction") items.push_back(arithmetic(draw, family == "addition", options));
    else if (family == "mapping") items.push_back(mapping(draw, options));
    else items.push_back(transform(draw, family, options));
  }
  return items;
}

std::string task_item_json(const TaskItem& item) {
  nlohmann::ordered_json line = {{"task", item.task}, {"prompt", item.prompt}};
  if (item.multiple_choice()) {
    line["choices"] = item.choices;
    line["label"] = item.label;
  } else {
    line["answer"] = item.answer;
  }
  if (!item.rationale.empty()) line["rationale"] = item.rationale;
  if (!item.demos.empty()) {
    nlohmann::ordered_json demos = nlohmann::ordered_json::array();
    for (const Demo& d : item.demos) {
      nlohmann::ordered_json demo = {{"prompt", d.prompt}, {"answer", d.answer}};
      if (!d.rationale.empty()) demo["rationale"] = d.rationale;
      demos.push_back(demo);
    }
    line["demos"] = demos;
  }
  return line.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace);
}

}  // namespace llmpress
