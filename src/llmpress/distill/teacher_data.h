#pragma once
// Teacher-built training sets (emergent-ability distillation, docs/tasks.md#gen-data):
//   gold      no teacher: the task file's own answers (and rationales with `rationales`) as records,
//             the baseline the teacher's data is measured against
//   icl       the teacher answers each question from a k-shot prompt (demonstrations drawn, seeded,
//             from the other items of its task, or the item's own demos)
//   cot       the teacher writes rationales (demonstrations with rationales, or a trigger such as
//             "Let's think step by step."), N samples per question; a rationale is kept when its final
//             answer matches the gold answer, or the majority answer when there is none (self-consistency)
//   instruct  self-instruct: the teacher proposes new instructions from a few seed prompts; those too
//             short, too long, with a banned word or ROUGE-L above a threshold against one already kept
//             are dropped; the teacher then answers the rest from a k-shot prompt of seeds
// With a trigger (gold, cot), the teacher's or gold prompt is the k-shot prompt + trigger + "\n".
// Step-by-step (gold, cot; "Distilling step-by-step", Hsieh et al. 2023): two records per question, an
// answer record (prompt without the trigger, response the bare answer, weight 1) and rationale records
// (prompt with the trigger as the task prefix, response rationale + answer, weight W); a student trained
// on both answers the plain prompt directly and the rationale task shapes it.
// Every record is a {"prompt", "response"} training record (`llmpress train` scores the response)
// with the task, answers and its provenance beside them.
#include <nlohmann/json.hpp>

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "llmpress/eval/generate_text.h"
#include "llmpress/eval/tasks.h"

namespace llmpress {

class Transformer;
class Tokenizer;

struct TeacherDataOptions {
  std::string mode = "icl";         // gold | icl | cot | instruct
  bool rationales = false;          // gold: responses carry the items' rationales
  int64_t shots = 4;                // demonstrations per teacher prompt (-1: each item's own demos)
  bool question_only = false;       // the record's prompt is the bare question, not the teacher's k-shot prompt
  bool keep_wrong = false;          // icl: keep answers that differ from the gold answer
  std::string trigger;              // gold, cot: appended on its own line after the k-shot prompt
  double step_by_step = 0;          // gold, cot: > 0 writes answer + rationale records, this the rationales' weight
  int64_t samples = 1;              // cot: rationales sampled per question
  int64_t instructions = 100;       // instruct: new instructions to keep
  int64_t seed_prompts = 3;         // instruct: seed prompts shown per proposal
  double rouge_threshold = 0.7;     // instruct: ROUGE-L F above this against a kept one is a duplicate
  int64_t min_words = 2, max_words = 40;
  std::vector<std::string> banned_words = {"image", "images", "picture", "graph", "file", "draw", "video"};
  uint64_t seed = 1;
  TextGenerationOptions generation;  // sampling, stop strings (default "\n\n"), batch size
  std::string teacher_path, teacher_sha256;  // provenance
};

struct TeacherData {
  std::vector<nlohmann::ordered_json> records;
  std::map<std::string, int64_t> counts;  // "kept", "dropped: REASON"
  int64_t generated_tokens = 0;
  double seconds = 0;
};

// `teacher` and `tokenizer` may be null for mode gold.
TeacherData build_teacher_data(const Transformer* teacher, const Tokenizer* tokenizer, const std::vector<TaskItem>& items,
                               const TeacherDataOptions& options);

// ROUGE-L F-measure over whitespace-separated lowercase words (rouge_score's rougeL with its default
// beta of 1: 2PR / (P + R) from the longest common subsequence).
double rouge_l(const std::string& a, const std::string& b);

// SHA-256 of a model file, or of a folder's regular files in name order (names and bytes).
std::string model_sha256(const std::string& path);

}  // namespace llmpress
