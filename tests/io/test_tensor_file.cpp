// llmpress's work files (layer files, resume points, training states): a round trip is exact, and a
// truncated file or one with a flipped byte (same size: issue 13's mutation run found those accepted,
// giving a different output silently) is an error naming the file.
#include <gtest/gtest.h>

#include <fstream>
#include <sstream>

#include "llmpress/core/error.h"
#include "llmpress/io/tensor_file.h"
#include "test_util.h"

namespace llmpress {
namespace {

using test::slurp;

void expect_error(const std::string& path, const std::string& needle) {
  try {
    load_tensor_file(path);
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    const std::string message = e.what();
    EXPECT_NE(message.find(path), std::string::npos) << message;
    EXPECT_NE(message.find(needle), std::string::npos) << message;
  }
}

TEST(TensorFile, RoundTripsAndRejectsDamage) {
  test::TempDir dir;
  const std::string path = dir.file("layer-0.bin");
  const TensorMap saved = {{"w", at::randn({7, 5})}, {"ids", at::arange(11, at::kLong)}, {"empty", at::zeros({0})}};
  save_tensor_file(path, saved, {{"note", "x"}});
  nlohmann::json metadata;
  const TensorMap loaded = load_tensor_file(path, at::kCPU, &metadata);
  ASSERT_EQ(loaded.size(), saved.size());
  for (const auto& [name, t] : saved) EXPECT_TRUE(at::equal(loaded.at(name), t)) << name;
  EXPECT_EQ(metadata["note"], "x");

  const std::string whole = slurp(path);
  std::ofstream(path, std::ios::binary).write(whole.data(), std::streamsize(whole.size() - 3));
  expect_error(path, "truncated");
  for (size_t from_end : {size_t(1), size_t(40), size_t(100)}) {  // inside the tensors' bytes
    std::string flipped = whole;
    flipped[flipped.size() - from_end] ^= 0x10;
    std::ofstream(path, std::ios::binary).write(flipped.data(), std::streamsize(flipped.size()));
    expect_error(path, "corrupt");
  }
}

}  // namespace
}  // namespace llmpress
