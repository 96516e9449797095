#include "llmpress/distill/teacher_data.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <random>
#include <set>

#include "llmpress/core/error.h"
#include "llmpress/core/sha256.h"
#include "llmpress/eval/generate_text.h"
#include "llmpress/model/transformer.h"
#include "llmpress/tokenizer/tokenizer.h"

namespace llmpress {

namespace {

std::vector<std::string> rouge_tokens(const std::string& text) {
  std::vector<std::string> words;
  std::string word;
  for (char c : text) {
    const char lower = (c >= 'A' && c <= 'Z') ? char(c - 'A' + 'a') : c;
    if ((lower >= 'a' && lower <= 'z') || (lower >= '0' && lower <= '9')) {
      word += lower;
    } else if (!word.empty()) {
      words.push_back(word), word.clear();
    }
  }
  if (!word.empty()) words.push_back(word);
  return words;
}

std::string trim(const std::string& text) {
  const size_t a = text.find_first_not_of(" \t\r\n"), b = text.find_last_not_of(" \t\r\n");
  return a == std::string::npos ? "" : text.substr(a, b - a + 1);
}

// The text before the final answer marker: the rationale of a chain-of-thought response.
std::string rationale_of(const std::string& response) {
  const size_t marker = response.rfind(kAnswerMarker);
  return trim(marker == std::string::npos ? "" : response.substr(0, marker));
}

nlohmann::ordered_json sampling_json(const TextGenerationOptions& g) {
  return {{"temperature", g.sampling.temperature}, {"top_p", g.sampling.top_p}, {"seed", g.sampling.seed},
          {"max_new_tokens", g.sampling.max_new_tokens}, {"until", g.until}};
}

nlohmann::ordered_json demos_json(const std::vector<Demo>& demos) {
  nlohmann::ordered_json list = nlohmann::ordered_json::array();
  for (const Demo& d : demos) list.push_back(d.prompt);
  return list;
}

class Builder {
 public:
  Builder(const Transformer* teacher, const Tokenizer* tokenizer, const TeacherDataOptions& options)
      : teacher_(teacher), tokenizer_(tokenizer), options_(options) {}

  std::vector<std::string> generate(const std::vector<std::string>& prompts, const TextGenerationOptions& generation,
                                    const std::string& label) {
    TextGenerationOptions g = generation;
    g.label = label;
    if (!teacher_ || !tokenizer_) throw Error("mode " + options_.mode + " needs a teacher model (-m)");
    const GeneratedTexts texts = generate_texts(*teacher_, *tokenizer_, prompts, g);
    data.generated_tokens += texts.tokens;
    data.seconds += texts.seconds;
    return texts.texts;
  }

  nlohmann::ordered_json provenance(const std::string& template_name, const TaskItem* item,
                                    const std::vector<Demo>& demos, const TextGenerationOptions& g) const {
    nlohmann::ordered_json p = {{"mode", options_.mode}, {"template", template_name}};
    if (item) p["source"] = item->source;
    p["demos"] = demos_json(demos);
    p["sampling"] = sampling_json(g);
    p["teacher"] = options_.teacher_path;
    p["teacher_sha256"] = options_.teacher_sha256;
    return p;
  }

  // The k-shot prompt, then the trigger on a line of its own when there is one.
  std::string teacher_prompt(const TaskItem& item, const std::vector<Demo>& demos, bool rationales) const {
    const std::string prompt = fewshot_prompt(item, demos, rationales);
    return options_.trigger.empty() ? prompt : prompt + options_.trigger + "\n";
  }

  void drop(const std::string& reason) { ++data.counts["dropped: " + reason]; }
  void keep(nlohmann::ordered_json record) {
    ++data.counts["kept"];
    data.records.push_back(std::move(record));
  }

  void gold(const std::vector<TaskItem>& items) {
    for (size_t i = 0; i < items.size(); ++i) {
      const TaskItem& item = items[i];
      const std::vector<Demo> demos = options_.question_only ? std::vector<Demo>{} : choose_demos(items, i, options_.shots, options_.seed);
      const bool rationale = options_.rationales || !options_.trigger.empty();
      const Demo gold = item.as_demo();
      nlohmann::ordered_json p = {{"mode", "gold"}, {"source", item.source}, {"demos", demos_json(demos)}};
      if (!options_.trigger.empty()) p["trigger"] = options_.trigger;
      if (step_by_step()) keep(answer_record(item, demos, gold.answer, p));
      nlohmann::ordered_json record = {{"prompt", teacher_prompt(item, demos, rationale)},
                                       {"response", response_text(item.prompt, gold.answer, gold.rationale, rationale)},
                                       {"task", item.task}, {"answer", gold.answer}};
      if (step_by_step()) record["weight"] = options_.step_by_step;
      record["provenance"] = p;
      keep(std::move(record));
    }
  }

  bool step_by_step() const { return options_.step_by_step > 0; }

  // Step-by-step's answer task: the prompt without trigger or rationale demonstrations, the bare answer.
  nlohmann::ordered_json answer_record(const TaskItem& item, const std::vector<Demo>& demos, const std::string& answer,
                                       nlohmann::ordered_json provenance) const {
    provenance["template"] = "step-by-step answer";
    provenance.erase("trigger");
    nlohmann::ordered_json record = {{"prompt", options_.question_only ? item.prompt : fewshot_prompt(item, demos, false)},
                                     {"response", response_text(item.prompt, answer, "", false)},
                                     {"task", item.task}, {"answer", answer}, {"weight", 1.0}};
    record["provenance"] = std::move(provenance);
    return record;
  }

  void icl(const std::vector<TaskItem>& items) {
    std::vector<std::string> prompts;
    std::vector<std::vector<Demo>> demos;
    for (size_t i = 0; i < items.size(); ++i) {
      demos.push_back(choose_demos(items, i, options_.shots, options_.seed));
      prompts.push_back(fewshot_prompt(items[i], demos.back(), false));
    }
    const auto responses = generate(prompts, options_.generation, "teacher answers");
    for (size_t i = 0; i < items.size(); ++i) {
      const TaskItem& item = items[i];
      const std::string response = trim(responses[i]);
      const std::string answer = extract_answer(response);
      const std::string gold = item.as_demo().answer;
      if (answer.empty()) { drop("no answer"); continue; }
      if (!options_.keep_wrong && answer != normalize_answer(gold)) { drop("wrong answer"); continue; }
      nlohmann::ordered_json record = {{"prompt", options_.question_only ? item.prompt : prompts[i]},
                                       {"response", response},
                                       {"task", item.task}, {"answer", answer}, {"gold", gold}};
      record["provenance"] = provenance("icl-" + std::to_string(demos[i].size()) + "-shot", &item, demos[i], options_.generation);
      keep(std::move(record));
    }
  }

  void cot(const std::vector<TaskItem>& items) {
    std::vector<std::string> prompts;
    std::vector<std::vector<Demo>> demos;
    std::vector<size_t> owner;
    for (size_t i = 0; i < items.size(); ++i) {
      demos.push_back(choose_demos(items, i, options_.shots, options_.seed));
      const std::string prompt = teacher_prompt(items[i], demos.back(), true);
      for (int64_t s = 0; s < options_.samples; ++s) prompts.push_back(prompt), owner.push_back(i);
    }
    const auto responses = generate(prompts, options_.generation, "teacher rationales");
    for (size_t i = 0, next = 0; i < items.size(); ++i) {
      const TaskItem& item = items[i];
      std::vector<std::pair<std::string, std::string>> candidates;  // (rationale, answer)
      std::map<std::string, int64_t> votes;
      for (; next < owner.size() && owner[next] == i; ++next) {
        const std::string response = trim(responses[next]);
        const std::string answer = extract_answer(response), rationale = rationale_of(response);
        if (answer.empty() || rationale.empty()) { drop(answer.empty() ? "no answer" : "no rationale"); continue; }
        candidates.push_back({rationale, answer});
        ++votes[answer];
      }
      if (candidates.empty()) continue;
      const bool gold = !item.as_demo().answer.empty();
      // Self-consistency without gold: the most frequent answer (ties: the one sampled first).
      std::string target = normalize_answer(item.as_demo().answer);
      if (!gold) {
        int64_t best = 0;
        for (const auto& [rationale, answer] : candidates)
          if (votes[answer] > best) best = votes[answer], target = answer;
      }
      std::set<std::string> seen;
      const std::string template_name = options_.trigger.empty() ? "cot-" + std::to_string(demos[i].size()) + "-shot"
                                                                 : "cot-trigger: " + options_.trigger;
      for (const auto& [rationale, answer] : candidates) {
        if (answer != target) { drop(gold ? "wrong answer" : "not the majority answer"); continue; }
        if (!seen.insert(rationale).second) { drop("duplicate rationale"); continue; }
        if (step_by_step() && seen.size() == 1)
          keep(answer_record(item, demos[i], answer, provenance(template_name, &item, demos[i], options_.generation)));
        // Step-by-step keeps the trigger in the prompt even for bare questions: it names the rationale task.
        const std::string prompt = !options_.question_only ? teacher_prompt(item, demos[i], true)
                                   : step_by_step()        ? item.prompt + options_.trigger + "\n"
                                                           : item.prompt;
        nlohmann::ordered_json record = {{"prompt", prompt}, {"response", response_text(item.prompt, answer, rationale, true)},
                                         {"task", item.task}, {"rationale", rationale}, {"answer", answer}};
        if (gold) record["gold"] = item.as_demo().answer;
        record["votes"] = votes[answer];
        record["samples"] = options_.samples;
        if (step_by_step()) record["weight"] = options_.step_by_step;
        record["provenance"] = provenance(template_name, &item, demos[i], options_.generation);
        keep(std::move(record));
      }
    }
  }

  // Self-instruct: rounds of proposals from seeds drawn out of the seed prompts and those kept so
  // far, filtered, until enough are kept or a round keeps none.
  void instruct(const std::vector<TaskItem>& items) {
    std::vector<std::string> pool;
    for (const TaskItem& item : items) pool.push_back(trim(item.prompt));
    std::vector<std::string> kept;
    std::mt19937_64 rng(options_.seed);
    TextGenerationOptions propose = options_.generation;
    propose.until = {"\n"};
    for (int64_t round = 0; int64_t(kept.size()) < options_.instructions; ++round) {
      std::vector<std::string> prompts;
      const int64_t wanted = options_.instructions - int64_t(kept.size());
      for (int64_t p = 0; p < std::max<int64_t>(wanted, options_.generation.batch_size); ++p) {
        std::string prompt = "Come up with new tasks.\n";
        for (int64_t s = 0; s < options_.seed_prompts; ++s) prompt += "Task: " + pool[size_t(rng() % pool.size())] + "\n";
        prompts.push_back(prompt + "Task:");
      }
      propose.sampling.seed = options_.generation.sampling.seed + uint64_t(round) * 1000003;
      const size_t before = kept.size();
      for (const std::string& proposal : generate(prompts, propose, "teacher proposals")) {
        const std::string instruction = trim(proposal);
        const std::vector<std::string> words = rouge_tokens(instruction);
        if (int64_t(words.size()) < options_.min_words) { drop("too short"); continue; }
        if (int64_t(words.size()) > options_.max_words) { drop("too long"); continue; }
        if (std::any_of(words.begin(), words.end(), [&](const std::string& w) {
              return std::find(options_.banned_words.begin(), options_.banned_words.end(), w) != options_.banned_words.end();
            })) { drop("banned word"); continue; }
        if (std::any_of(pool.begin(), pool.end(), [&](const std::string& k) { return rouge_l(k, instruction) > options_.rouge_threshold; })) {
          drop("similar to one kept (ROUGE-L > " + std::to_string(options_.rouge_threshold).substr(0, 4) + ")");
          continue;
        }
        if (int64_t(kept.size()) >= options_.instructions) break;
        kept.push_back(instruction);
        pool.push_back(instruction);
      }
      if (kept.size() == before) break;  // the teacher proposes nothing new
    }
    // Answers from a k-shot prompt of seed items (of any task: the new instruction has none).
    std::vector<std::string> prompts;
    std::vector<std::vector<Demo>> demos;
    for (size_t k = 0; k < kept.size(); ++k) {
      std::vector<Demo> chosen;
      for (int64_t s = 0; s < std::max<int64_t>(options_.shots, 0); ++s) chosen.push_back(items[size_t(rng() % items.size())].as_demo());
      TaskItem question;
      question.prompt = kept[k] + "\n";
      prompts.push_back(fewshot_prompt(question, chosen, false));
      demos.push_back(chosen);
    }
    const auto responses = generate(prompts, options_.generation, "teacher answers");
    for (size_t k = 0; k < kept.size(); ++k) {
      const std::string response = trim(responses[k]);
      const std::string answer = extract_answer(response);
      if (answer.empty()) { drop("no answer"); continue; }
      nlohmann::ordered_json record = {{"prompt", options_.question_only ? kept[k] + "\n" : prompts[k]},
                                       {"response", response}, {"task", "self-instruct"},
                                       {"instruction", kept[k]}, {"answer", answer}};
      record["provenance"] = provenance("self-instruct", nullptr, demos[k], options_.generation);
      keep(std::move(record));
    }
  }

  TeacherData data;

 private:
  const Transformer* teacher_;
  const Tokenizer* tokenizer_;
  const TeacherDataOptions& options_;
};

}  // namespace

double rouge_l(const std::string& a, const std::string& b) {
  const std::vector<std::string> x = rouge_tokens(a), y = rouge_tokens(b);
  if (x.empty() || y.empty()) return 0;
  std::vector<size_t> previous(y.size() + 1, 0), current(y.size() + 1, 0);
  for (size_t i = 1; i <= x.size(); ++i) {
    for (size_t j = 1; j <= y.size(); ++j)
      current[j] = x[i - 1] == y[j - 1] ? previous[j - 1] + 1 : std::max(previous[j], current[j - 1]);
    std::swap(previous, current);
  }
  const double lcs = double(previous[y.size()]);
  if (lcs == 0) return 0;
  const double precision = lcs / double(y.size()), recall = lcs / double(x.size());
  return 2 * precision * recall / (precision + recall);
}

std::string model_sha256(const std::string& path) {
  namespace fs = std::filesystem;
  if (!fs::is_directory(path)) return sha256_file(path);
  std::vector<fs::path> files;
  for (const auto& entry : fs::directory_iterator(path))
    if (entry.is_regular_file()) files.push_back(entry.path());
  std::sort(files.begin(), files.end());
  Sha256 all;
  for (const fs::path& file : files) {
    const std::string line = file.filename().string() + " " + sha256_file(file.string()) + "\n";
    all.update(line.data(), line.size());
  }
  return all.hex_digest();
}

TeacherData build_teacher_data(const Transformer* teacher, const Tokenizer* tokenizer, const std::vector<TaskItem>& items,
                               const TeacherDataOptions& options) {
  if (items.empty()) throw Error("no questions to build data from");
  if (options.samples < 1) throw Error("--samples must be at least 1");
  if (options.rouge_threshold <= 0 || options.rouge_threshold > 1) throw Error("--rouge-threshold must be in (0, 1]");
  if (options.step_by_step < 0 || !std::isfinite(options.step_by_step)) throw Error("--step-by-step must be a weight above 0");
  if (options.step_by_step > 0 && (options.mode != "gold" && options.mode != "cot"))
    throw Error("--step-by-step needs --mode gold or cot (it pairs answers with rationales)");
  if (options.step_by_step > 0 && options.trigger.empty())
    throw Error("--step-by-step needs --trigger: the trigger tells the rationale task from the answer task");
  Builder builder(teacher, tokenizer, options);
  if (options.mode == "gold") builder.gold(items);
  else if (options.mode == "icl") builder.icl(items);
  else if (options.mode == "cot") builder.cot(items);
  else if (options.mode == "instruct") builder.instruct(items);
  else throw Error("unknown --mode '" + options.mode + "' (gold, icl, cot or instruct)");
  return std::move(builder.data);
}

}  // namespace llmpress
