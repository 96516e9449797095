// Recipes (YAML): model, calibration, stages and their options, output; printed back as YAML and JSON.
#include "fuzz_input.h"
#include "llmpress/pipeline/recipe.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path = fuzz::write_input("recipe.yaml", data, size);
  fuzz::expect_clean([&] {
    const llmpress::Recipe recipe = llmpress::load_recipe(path);
    (void)llmpress::recipe_to_yaml(recipe);
    (void)llmpress::recipe_to_json(recipe).dump();
  });
  return 0;
}
