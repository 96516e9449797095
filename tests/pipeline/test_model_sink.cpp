// The model sink's own guarantees: no NaN or Inf reaches an output file, whatever the format; the error
// names the tensor and the output name stays free.
#include <gtest/gtest.h>

#include <filesystem>
#include <limits>

#include "llmpress/core/error.h"
#include "llmpress/pipeline/model_sink.h"
#include "llmpress/train/parameters.h"
#include "pipeline/pipeline_test_util.h"

namespace llmpress {
namespace {

TEST(ModelSink, ANonFiniteWeightIsAnErrorNamingTheTensorAndWritesNothing) {
  LLMPRESS_REQUIRE_GUTENBERG();
  const Checkpoint origin = open_checkpoint(test::shared_path(test::kGutenberg));
  Transformer model = deep_copy(Transformer::load(origin));
  model.layers[1].linear("self_attn.q_proj").weight->dense()[3][5] = std::numeric_limits<float>::quiet_NaN();
  const ResidentSource source(model);
  test::TempDir dir;
  for (const char* name : {"out", "out.gguf"}) {
    OutputSpec spec;
    spec.path = dir.file(name);
    SinkInput input{source, origin, resolve_output(spec, "hf")};
    try {
      write_model(input);
      ADD_FAILURE() << name << ": no error";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("model.layers.1.self_attn.q_proj.weight"), std::string::npos) << e.what();
    }
    EXPECT_FALSE(std::filesystem::exists(dir.file(name))) << name;
  }
  EXPECT_TRUE(std::filesystem::is_empty(dir.path()));  // no temporaries left either
}

}  // namespace
}  // namespace llmpress
