// Our SparseGPT against the paper authors' code (IST-DASLab/sparsegpt, SparseGPT.fasterprune) on the
// real weights and Hessians of stories260K. Skips unless LLMPRESS_SPARSEGPT_REF names a checkout of
// that repository (never part of ours); runs it with /usr/bin/python3 (Debian's python3-torch).
#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "calib/calib_test_util.h"
#include "llmpress/calib/engine.h"
#include "llmpress/model/transformer.h"
#include "llmpress/prune/sparsegpt.h"
#include "llmpress/prune/sparsity_report.h"

namespace llmpress {
namespace {

void write_raw(const std::string& path, const at::Tensor& t) {
  const at::Tensor c = t.contiguous();
  std::ofstream(path, std::ios::binary).write(static_cast<const char*>(c.data_ptr()), std::streamsize(c.nbytes()));
}

at::Tensor read_raw(const std::string& path, int64_t rows, int64_t cols) {
  at::Tensor t = at::empty({rows, cols}, at::kFloat);
  std::ifstream in(path, std::ios::binary);
  in.read(static_cast<char*>(t.data_ptr()), std::streamsize(t.nbytes()));
  EXPECT_TRUE(in.good()) << path;
  return t;
}

double output_error(const at::Tensor& w, const at::Tensor& q, const at::Tensor& h) {
  const at::Tensor d = (w - q).to(at::kDouble);
  return (at::matmul(d, h) * d).sum().item<double>();
}

// Collects (name, weight, Hessian) of the first two decoder layers; leaves the weights dense.
class Recorder : public Compressor {
 public:
  std::string describe() const override { return "record"; }
  StatsRequest needs() const override { return {true, false, 0}; }
  std::shared_ptr<LinearWeight> compress(const std::string& name, const Linear& linear,
                                         const InputStats& stats) override {
    if (name.find("layers.0.") != std::string::npos || name.find("layers.1.") != std::string::npos)
      layers.push_back({name, linear.weight->dense().clone(), stats.hessian.clone()});
    return linear.weight;
  }
  struct Entry {
    std::string name;
    at::Tensor weight, hessian;
  };
  std::vector<Entry> layers;
};

TEST(SparseGptReference, MatchesTheAuthorsCodeOnRealLayers) {
  const char* repo = std::getenv("LLMPRESS_SPARSEGPT_REF");
  if (!repo || !*repo) GTEST_SKIP() << "set LLMPRESS_SPARSEGPT_REF to a checkout of IST-DASLab/sparsegpt";
  LLMPRESS_REQUIRE_SHARED(test::kStoriesModel);
  LLMPRESS_REQUIRE_SHARED(test::kStoriesCalib);
  const Checkpoint checkpoint = open_checkpoint(test::shared_path(test::kStoriesModel));
  Recorder recorder;
  EngineOptions engine;
  engine.progress = false;
  compress_sequential(checkpoint, Transformer::load_shell(checkpoint), test::stories_calibration(checkpoint, 16, 128),
                      recorder, engine);
  ASSERT_EQ(recorder.layers.size(), 14u);
  // The harness sits beside this file (CMake compiles tests by absolute path).
  const std::string script = (std::filesystem::path(__FILE__).parent_path() / "sparsegpt_reference.py").string();
  test::TempDir dir;
  for (const auto& entry : recorder.layers) {
    const int64_t rows = entry.weight.size(0), cols = entry.weight.size(1);
    write_raw(dir.file("w.bin"), entry.weight.to(at::kFloat));
    write_raw(dir.file("h.bin"), entry.hessian.to(at::kDouble));
    std::ofstream(dir.file("meta.json")) << "{\"rows\": " << rows << ", \"cols\": " << cols << "}";
    for (const char* pattern : {"50%", "2:4"}) {
      const bool nm = std::string(pattern) == "2:4";
      const std::string command = "/usr/bin/python3 " + script + " " + repo + " " + dir.path() +
                                  (nm ? " 2 4 0 128" : " 0 0 0.5 128") + " > " + dir.file("log") + " 2>&1";
      ASSERT_EQ(std::system(command.c_str()), 0) << command;
      const at::Tensor theirs = read_raw(dir.file("out.bin"), rows, cols);
      SparseGptOptions options;
      options.target = nm ? SparsityTarget::pattern("2:4") : SparsityTarget::unstructured(0.5);
      const at::Tensor ours = sparsegpt_prune(entry.weight, entry.hessian, options, entry.name).weight;
      const double e_ours = output_error(entry.weight, ours, entry.hessian);
      const double e_theirs = output_error(entry.weight, theirs, entry.hessian);
      const double agree = ((ours == 0) == (theirs == 0)).to(at::kDouble).mean().item<double>();
      std::printf("%-36s %s  error ours %.6g  reference %.6g  mask agreement %.5f\n", entry.name.c_str(), pattern,
                  e_ours, e_theirs, agree);
      if (nm) {
        // Same rule, same order: identical up to float32 rounding of the reference's Hessian.
        EXPECT_TRUE(measure_sparsity(theirs, 2, 4).compliant()) << entry.name;
        EXPECT_GT(agree, 0.995) << entry.name;
        EXPECT_LT(e_ours, e_theirs * 1.01) << entry.name;
      } else {
        // The reference removes every weight at or below the block's threshold, one more per block
        // than int(n * sparsity); ours removes exactly int(n * sparsity). Ours can only be lower.
        EXPECT_GT(agree, 0.995) << entry.name;
        EXPECT_LT(e_ours, e_theirs * 1.01) << entry.name;
      }
    }
  }
}

}  // namespace
}  // namespace llmpress
