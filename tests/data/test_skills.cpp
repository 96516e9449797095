// The skill task generator: every answer recomputed independently from the prompt, rationales that
// carry the answer, mappings that demonstrations fully define, and seeded reproducibility.
#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <regex>
#include <set>

#include "llmpress/core/error.h"
#include "llmpress/data/skills.h"
#include "llmpress/eval/tasks.h"

namespace llmpress {
namespace {

std::string after(const std::string& prompt, const std::string& marker) {
  std::string rest = prompt.substr(prompt.find(marker) + marker.size());
  return rest.substr(0, rest.find('\n'));
}

TEST(Skills, ArithmeticAnswersAndDigitByDigitRationales) {
  SkillOptions options;
  options.digits = 4;
  for (const std::string family : {"addition", "subtraction"}) {
    for (const TaskItem& item : make_skill_items(family, 200, options)) {
      std::smatch m;
      ASSERT_TRUE(std::regex_match(item.prompt, m, std::regex("(Add|Subtract): (\\d+) ([+-]) (\\d+)\n"))) << item.prompt;
      const long a = std::stol(m[2]), b = std::stol(m[4]);
      EXPECT_LT(a, 10000);
      EXPECT_EQ(item.answer, std::to_string(family == "addition" ? a + b : a - b)) << item.prompt;
      // The digits written, read from the last column to the first, are the answer.
      std::string written;
      const std::regex write_step("write (\\d)");
      for (auto it = std::sregex_iterator(item.rationale.begin(), item.rationale.end(), write_step); it != std::sregex_iterator(); ++it)
        written = (*it)[1].str() + written;
      written.erase(0, std::min(written.find_first_not_of('0'), written.size() - 1));
      EXPECT_EQ(written, item.answer) << item.rationale;
    }
  }
}

TEST(Skills, StringTransformsRecomputed) {
  for (const std::string family : {"reverse", "sort", "count", "swapcase"}) {
    for (const TaskItem& item : make_skill_items(family, 200, {})) {
      const std::string word = after(item.prompt, ": ");
      std::string expected = word;
      if (family == "reverse") std::reverse(expected.begin(), expected.end());
      if (family == "sort") std::sort(expected.begin(), expected.end());
      if (family == "swapcase")
        for (char& c : expected) c = std::isupper(static_cast<unsigned char>(c)) ? char(std::tolower(c)) : char(std::toupper(c));
      if (family == "count") {
        const char letter = item.prompt[std::string("Count the letter ").size()];
        expected = std::to_string(std::count(word.begin(), word.end(), letter));
      }
      EXPECT_EQ(item.answer, expected) << item.prompt;
      EXPECT_GE(word.size(), 3u);
      EXPECT_LE(word.size(), 6u);
      EXPECT_FALSE(item.rationale.empty());
    }
  }
}

TEST(Skills, MappingsAreDefinedByTheirDemonstrations) {
  std::set<std::string> answers;
  for (const TaskItem& item : make_skill_items("mapping", 200, {})) {
    std::map<char, char> seen;
    for (const Demo& demo : item.demos) {
      const std::string in = after(demo.prompt, "Map: ");
      ASSERT_EQ(in.size(), demo.answer.size());
      for (size_t i = 0; i < in.size(); ++i) {
        const auto [it, fresh] = seen.emplace(in[i], demo.answer[i]);
        EXPECT_EQ(it->second, demo.answer[i]) << "a mapping must be a function";
      }
    }
    const std::string query = after(item.prompt, "Map: ");
    std::string expected;
    for (char c : query) {
      ASSERT_TRUE(seen.count(c)) << "query letter " << c << " not demonstrated";
      expected += seen[c];
    }
    EXPECT_EQ(item.answer, expected);
    answers.insert(item.demos[0].answer);
  }
  EXPECT_GT(answers.size(), 150u);  // fresh mappings, not one reused
}

TEST(Skills, SeededAndIndependentPerFamily) {
  SkillOptions one, two;
  two.seed = 2;
  const auto a = make_skill_items("addition", 20, one), b = make_skill_items("addition", 20, one);
  const auto c = make_skill_items("addition", 20, two);
  int differ = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(task_item_json(a[i]), task_item_json(b[i]));
    differ += a[i].prompt != c[i].prompt;
  }
  EXPECT_GT(differ, 15);
  EXPECT_EQ(make_skill_items("addition", 30, one)[5].prompt, a[5].prompt);  // a longer run starts the same
  EXPECT_THROW(make_skill_items("division", 1, one), Error);
}

}  // namespace
}  // namespace llmpress
