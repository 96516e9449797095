// Recipes: parsing, the errors a bad recipe gets (each naming its line, before any work), and
// the YAML written by --save-recipe reading back to the same recipe.
#include <gtest/gtest.h>

#include "llmpress/core/error.h"
#include "llmpress/io/checkpoint.h"
#include "llmpress/pipeline/method.h"
#include "llmpress/pipeline/pipeline.h"
#include "llmpress/pipeline/recipe.h"
#include "test_util.h"

namespace llmpress {
namespace {

const char* kGood = R"(# two stages
model: some/model
calibration:
  file: calib.txt
  nsamples: 16
  seqlen: 64
stages:
  - method: sparsegpt
    pattern: "2:4"
    ignore: ['mlp\.down_proj']
  - method: gptq
    bits: 4
    group: 128
    act_order: true
    damp: 0.02
output:
  path: out-gptq
  format: gptq
)";

// A small Llama config every check can run against (no files needed).
ModelConfig small_config() {
  ModelConfig c;
  c.vocab_size = 512;
  c.hidden_size = 64;
  c.intermediate_size = 128;
  c.num_layers = 2;
  c.num_heads = 4;
  c.num_kv_heads = 2;
  c.head_dim = 16;
  return c;
}

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

std::string recipe_error(const std::string& text) {
  return error_of([&] { check_recipe(parse_recipe(text, "r.yaml"), small_config()); });
}

TEST(Recipe, ParsesStagesOptionsAndOutput) {
  const Recipe r = parse_recipe(kGood, "r.yaml");
  EXPECT_EQ(r.model, "some/model");
  EXPECT_EQ(r.calibration.file, "calib.txt");
  EXPECT_EQ(r.calibration.nsamples, 16);
  EXPECT_EQ(r.calibration.seqlen, 64);
  ASSERT_EQ(r.stages.size(), 2u);
  EXPECT_EQ(r.stages[0].method, "sparsegpt");
  EXPECT_EQ(r.stages[0].options["pattern"], "2:4");
  EXPECT_EQ(r.stages[0].ignore, std::vector<std::string>{"mlp\\.down_proj"});
  EXPECT_EQ(r.stages[0].where.line, 8);
  EXPECT_EQ(r.stages[1].options["bits"], 4);
  EXPECT_EQ(r.stages[1].options["act_order"], true);
  EXPECT_DOUBLE_EQ(r.stages[1].options["damp"].get<double>(), 0.02);
  EXPECT_EQ(r.output.path, "out-gptq");
  EXPECT_EQ(r.output.format, "gptq");
  const OutputSpec out = check_recipe(r, small_config());
  EXPECT_EQ(out.format, "gptq");
}

TEST(Recipe, SavedYamlReadsBackToTheSameRecipe) {
  const Recipe r = parse_recipe(kGood, "r.yaml");
  const std::string yaml = recipe_to_yaml(r);
  const Recipe back = parse_recipe(yaml, "saved.yaml");
  EXPECT_EQ(recipe_to_json(back), recipe_to_json(r)) << yaml;
  // Strings that look like numbers stay strings.
  EXPECT_TRUE(back.stages[0].options["pattern"].is_string());
}

// Found by fuzz_recipe: a path with a byte that is not UTF-8 (legal in Linux file names) made writing the
// recipe's provenance into the output throw at the very end of a job. Such bytes become U+FFFD.
TEST(Recipe, PathsThatAreNotUtf8StillSerialize) {
  std::string yaml = kGood;
  const size_t at = yaml.find("model: ");
  ASSERT_NE(at, std::string::npos);
  yaml.insert(at + 7, "t\x9cny/");
  const Recipe r = parse_recipe(yaml, "r.yaml");
  std::string json;
  ASSERT_NO_THROW(json = recipe_to_json(r).dump());
  EXPECT_NE(json.find("t\xef\xbf\xbdny/"), std::string::npos) << json;
}

TEST(Recipe, UnknownKeysNameTheirLine) {
  EXPECT_EQ(error_of([] { parse_recipe("model: m\nstagez: []\n", "r.yaml"); }).rfind("r.yaml:2: unknown key 'stagez'", 0), 0u);
  const std::string e = error_of([] { parse_recipe("model: m\noutput:\n  path: x\n  formt: gguf\n", "r.yaml"); });
  EXPECT_EQ(e.rfind("r.yaml:4: unknown key 'formt' in output", 0), 0u) << e;
  EXPECT_NE(error_of([] { parse_recipe("model: m\ncalibration:\n  nsamples: many\n", "r.yaml"); })
                .find("r.yaml:3: calibration nsamples must be an integer"),
            std::string::npos);
  EXPECT_NE(error_of([] { parse_recipe("model: [1, 2\n", "r.yaml"); }).find("not valid YAML"), std::string::npos);
}

TEST(Recipe, BadStagesFailBeforeAnyWorkNamingTheLine) {
  const std::string head = "model: m\ncalibration: c.txt\noutput: out\nstages:\n";
  // Unknown method, with the list of known ones.
  std::string e = recipe_error(head + "  - method: gptqq\n");
  EXPECT_NE(e.find("r.yaml:5"), std::string::npos) << e;
  EXPECT_NE(e.find("unknown method 'gptqq'"), std::string::npos) << e;
  EXPECT_NE(e.find("sparsegpt"), std::string::npos) << e;
  // Unknown option.
  e = recipe_error(head + "  - method: gptq\n    bitz: 4\n");
  EXPECT_NE(e.find("r.yaml:6: method gptq has no option 'bitz'"), std::string::npos) << e;
  // Wrong type.
  e = recipe_error(head + "  - method: gptq\n    bits: four\n");
  EXPECT_NE(e.find("r.yaml:6: option 'bits' of gptq must be an integer"), std::string::npos) << e;
  e = recipe_error(head + "  - method: gptq\n    act_order: 3\n");
  EXPECT_NE(e.find("r.yaml:6: option 'act_order' of gptq must be true or false"), std::string::npos) << e;
  // A bad value of the right type.
  e = recipe_error(head + "  - method: gptq\n    bits: 12\n");
  EXPECT_NE(e.find("r.yaml:6"), std::string::npos) << e;
  // A target pattern that matches no layer, and one that is not a regex.
  e = recipe_error(head + "  - method: rtn\n    targets: ['mlp\\.down_projection']\n");
  EXPECT_NE(e.find("r.yaml:5: targets pattern 'mlp\\.down_projection' matches no linear layer"), std::string::npos) << e;
  e = recipe_error(head + "  - method: rtn\n    ignore: ['(']\n");
  EXPECT_NE(e.find("not a valid regular expression"), std::string::npos) << e;
  // A stage that cannot follow the previous one.
  e = recipe_error(head + "  - method: gptq\n  - method: sparsegpt\n");
  EXPECT_NE(e.find("r.yaml:6"), std::string::npos) << e;
  EXPECT_NE(e.find("cannot follow a quantization stage"), std::string::npos) << e;
  e = recipe_error(head + "  - method: magnitude\n  - method: heads\n");
  EXPECT_NE(e.find("must come before"), std::string::npos) << e;
  e = recipe_error(head + "  - method: svd\n    ratio: 0.8\n  - method: gptq\n    type: Q4_K_M\n");
  EXPECT_NE(e.find("cannot hold factorized layers"), std::string::npos) << e;
  // A stage that needs calibration data without any.
  e = recipe_error("model: m\noutput: out\nstages:\n  - method: gptq\n");
  EXPECT_NE(e.find("r.yaml:4: stage 1 (gptq) needs calibration text"), std::string::npos) << e;
}

TEST(Recipe, OutputFormatFollowsTheNameAndConflictsAreErrors) {
  Recipe r = parse_recipe("model: m\nstages:\n  - method: rtn\noutput: x.gguf\n", "r.yaml");
  EXPECT_EQ(check_recipe(r, small_config()).format, "gguf");
  r.output.path = "folder";
  EXPECT_EQ(check_recipe(r, small_config()).format, "hf");
  r.output.type = "Q4_K_M";
  EXPECT_EQ(check_recipe(r, small_config()).format, "gguf");  // a mix means GGUF
  r.output.format = "gptq";
  EXPECT_NE(error_of([&] { check_recipe(r, small_config()); }).find("a GPTQ checkpoint has no type option"),
            std::string::npos);
  r.output.type.clear();
  r.output.path = "x.gguf";
  EXPECT_NE(error_of([&] { check_recipe(r, small_config()); }).find("ends in .gguf but the format is gptq"),
            std::string::npos);
  // GPTQ output needs an integer-grid quantization stage last.
  r = parse_recipe("model: m\ncalibration: c\nstages:\n  - method: sparsegpt\noutput: {path: o, format: gptq}\n", "r.yaml");
  EXPECT_NE(error_of([&] { check_recipe(r, small_config()); }).find("integer grid"), std::string::npos);
}

TEST(Recipe, EveryRegisteredMethodHasAFamilyAndDocumentedOptions) {
  for (const char* family : {"quantize", "prune", "lowrank"}) EXPECT_FALSE(registered_methods(family).empty()) << family;
  for (const MethodSpec* m : registered_methods()) {
    EXPECT_FALSE(m->summary.empty()) << m->name;
    EXPECT_TRUE(bool(m->check) && bool(m->needs_calibration)) << m->name;
    EXPECT_NE(bool(m->compressor), bool(m->transform)) << m->name;
    for (const OptionSpec& o : m->options) EXPECT_FALSE(o.help.empty()) << m->name << " " << o.name;
  }
}

}  // namespace
}  // namespace llmpress
