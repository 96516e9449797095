// GGUF files with i-quant and ternary tensors made by llama.cpp itself (llama-imatrix + llama-quantize
// from our F32 export of gutenberg-dev-llama-5m): every tensor must decode to ggml's own dequantization,
// llmpress's perplexity (llama.cpp convention) must agree with llama-perplexity's, and the CLI must
// read, run and re-quantize them.
// Skips unless LLMPRESS_LLAMACPP_BIN names a folder with llama-quantize, llama-imatrix and
// llama-perplexity (a llama.cpp build; never part of this repository).
#include <sys/wait.h>

#include <array>
#include <cstdio>
#include <cstring>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <memory>
#include <regex>
#include <set>

#include "cli/cli_test_util.h"
#include "export_test_util.h"
#include "llmpress/export/gguf_writer.h"
#include "llmpress/io/gguf.h"
#include "test_util.h"

namespace llmpress {
namespace {

constexpr int kContext = 256, kChunks = 20;

// Runs a shell command; returns its exit status and fills `out` with stdout and stderr.
int run(const std::string& command, std::string& out) {
  out.clear();
  std::unique_ptr<FILE, int (*)(FILE*)> pipe(popen((command + " 2>&1").c_str(), "r"), pclose);
  if (!pipe) return -1;
  std::array<char, 4096> buf;
  while (size_t n = std::fread(buf.data(), 1, buf.size(), pipe.get())) out.append(buf.data(), n);
  const int status = pclose(pipe.release());
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

std::string tail(const std::string& s) { return s.substr(s.size() > 3000 ? s.size() - 3000 : 0); }

double llamacpp_perplexity(const std::string& bin, const std::string& model, const std::string& text) {
  std::string out;
  run(bin + "/llama-perplexity -m " + model + " -f " + text + " -c " + std::to_string(kContext) + " --chunks " +
          std::to_string(kChunks) + " -t 2",
      out);
  std::smatch m;
  if (!std::regex_search(out, m, std::regex("Final estimate: PPL = ([0-9.]+)"))) {
    ADD_FAILURE() << "llama-perplexity failed on " << model << ":\n" << tail(out);
    return -1;
  }
  return std::stod(m[1]);
}

double our_perplexity(const std::string& path, const std::string& text) {
  return test::llamacpp_style_perplexity(path, text, kContext, kChunks);
}

// Tensors of each ggml type in a GGUF file, by type name.
std::map<std::string, int> type_counts(const std::string& path) {
  std::map<std::string, int> counts;
  for (const GgufTensorInfo& t : read_gguf(path).tensors) ++counts[ggml_type_name(t.ggml_type)];
  return counts;
}

std::string describe(const std::map<std::string, int>& counts) {
  std::string s;
  for (const auto& [name, n] : counts) s += (s.empty() ? "" : " ") + name + "x" + std::to_string(n);
  return s;
}

TEST(LlamaCppIquant, PerplexityMatchesLlamaPerplexity) {
  const char* env = std::getenv("LLMPRESS_LLAMACPP_BIN");
  if (!env || !*env)
    GTEST_SKIP() << "set LLMPRESS_LLAMACPP_BIN to a llama.cpp build's bin folder (llama-quantize, llama-imatrix, "
                    "llama-perplexity) to compare i-quant perplexities with llama.cpp's";
  const std::string bin = env;
  for (const char* tool : {"llama-quantize", "llama-imatrix", "llama-perplexity"})
    ASSERT_TRUE(std::filesystem::exists(bin + "/" + tool)) << "LLMPRESS_LLAMACPP_BIN has no " << tool;
  LLMPRESS_REQUIRE_SHARED("models/gutenberg-dev-llama-5m/model.safetensors");
  LLMPRESS_REQUIRE_SHARED("data/gutenberg-dev-calib.txt");
  LLMPRESS_REQUIRE_SHARED("data/gutenberg-dev-eval.txt");
  const std::string calib = test::shared_path("data/gutenberg-dev-calib.txt");
  const std::string eval = test::shared_path("data/gutenberg-dev-eval.txt");

  test::TempDir dir;
  const char* keep = std::getenv("LLMPRESS_EXPORT_KEEP_DIR");  // to rerun llama.cpp by hand
  const std::string out_dir = keep && *keep ? std::string(keep) : dir.path();
  const std::string f32 = out_dir + "/gutenberg-F32.gguf";
  {
    const Checkpoint checkpoint = open_checkpoint(test::shared_path("models/gutenberg-dev-llama-5m"));
    write_gguf_model(f32, checkpoint.config, test::load_all(checkpoint), load_tokenizer(checkpoint)->to_vocab(),
                     TensorType::F32);
  }
  const std::string imatrix = out_dir + "/gutenberg-imatrix.dat";
  std::string out;
  // --process-output: --pure files put output.weight in the low-bit type too, which needs its imatrix.
  const std::string imatrix_args = " -f " + calib + " -o " + imatrix + " -c 256 --chunks 64 --process-output -t 2";
  ASSERT_EQ(run(bin + "/llama-imatrix -m " + f32 + imatrix_args, out), 0) << tail(out);

  // Default mixes (as published files are made; several hold more than one i-quant type) and --pure
  // ones (every matrix but token_embd, which has no importance data, in the type itself).
  struct Case {
    const char* mix;   // llama-quantize's type argument
    const char* type;  // the tensor type it brings (its "IQ2_S" mix is mostly IQ2_XS; IQ2_M is IQ2_S)
    bool pure;
  };
  const Case cases[] = {{"IQ4_XS", "IQ4_XS", false}, {"IQ3_XXS", "IQ3_XXS", false}, {"IQ2_XS", "IQ2_XS", false},
                        {"IQ1_M", "IQ1_M", false},   {"TQ2_0", "TQ2_0", false},     {"IQ4_NL", "IQ4_NL", true},
                        {"IQ2_M", "IQ2_S", true},    {"IQ1_S", "IQ1_S", true},      {"TQ1_0", "TQ1_0", true}};
  std::set<std::string> seen;  // every type in any of the files
  for (const Case& c : cases) {
    const std::string label = std::string(c.mix) + (c.pure ? " --pure" : "");
    SCOPED_TRACE(label);
    const std::string path = out_dir + "/gutenberg-" + c.mix + (c.pure ? "-pure" : "") + ".gguf";
    const std::string pure = c.pure ? "--pure --token-embedding-type Q8_0 " : "";
    const std::string quantize_args = pure + "--imatrix " + imatrix + " " + f32 + " " + path + " " + c.mix + " 2";
    ASSERT_EQ(run(bin + "/llama-quantize " + quantize_args, out), 0) << tail(out);
    const std::map<std::string, int> counts = type_counts(path);
    ASSERT_GT(counts.count(c.type), 0u) << "no " << c.type << " tensor in " << describe(counts);
    for (const auto& entry : counts) seen.insert(entry.first);

    // ggml's own dequantization of the whole file (llama-quantize to F32 runs every tensor through
    // ggml's to_float) must equal ours tensor for tensor, bit for bit.
    const std::string dequantized = path + ".F32.gguf";
    ASSERT_EQ(run(bin + "/llama-quantize --allow-requantize " + path + " " + dequantized + " F32 2", out), 0)
        << tail(out);
    {
      const Checkpoint ours = open_checkpoint(path), ggml = open_checkpoint(dequantized);
      for (const auto& [name, raw] : ours.tensors) {
        const at::Tensor a = ours.load(name), b = ggml.load(name);
        ASSERT_EQ(a.sizes(), b.sizes()) << name;
        EXPECT_EQ(std::memcmp(a.data_ptr<float>(), b.data_ptr<float>(), size_t(a.numel()) * 4), 0)
            << name << " (" << tensor_type_name(raw.type) << ") decodes differently from ggml";
      }
    }

    const double ours = our_perplexity(path, eval);
    const double theirs = llamacpp_perplexity(bin, path, eval);
    const double theirs_f32 = llamacpp_perplexity(bin, dequantized, eval);
    std::printf("  %-14s llmpress %.4f  llama-perplexity %.4f (on ggml's F32 dequantization %.4f)  [%s]\n",
                label.c_str(), ours, theirs, theirs_f32, describe(counts).c_str());
    // Same weights in float32 on both sides: the F32 agreement (llama.cpp prints 4 decimals).
    EXPECT_NEAR(ours, theirs_f32, 2e-4 + theirs_f32 * 2e-5);
    // On the quantized file llama.cpp multiplies against activations rounded to 8 bits (Q8_K).
    EXPECT_NEAR(ours, theirs, theirs * 2e-3);
  }

  for (const char* type : {"IQ1_S", "IQ1_M", "IQ2_XXS", "IQ2_XS", "IQ2_S", "IQ3_XXS", "IQ3_S", "IQ4_NL", "IQ4_XS",
                           "TQ1_0", "TQ2_0"})
    EXPECT_EQ(seen.count(type), 1u) << type << " was in none of the files";

  // The CLI on one of them: info names the types, generate runs, convert/quantize re-encode.
  const std::string iq = out_dir + "/gutenberg-IQ3_XXS.gguf";  // made above: IQ3_XXS, IQ3_S, IQ2_S
  test::CommandResult r = test::run_llmpress("info -m " + iq);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  for (const char* type : {"IQ3_XXS", "IQ3_S", "IQ2_S"}) EXPECT_NE(r.out.find(type), std::string::npos) << r.out;
  r = test::run_llmpress("generate -m " + iq + " -p 'The ship' -n 8 --seed 1");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_FALSE(r.out.empty());
  const std::string q4 = out_dir + "/gutenberg-IQ3_XXS-to-Q4_K_M.gguf";
  r = test::run_llmpress("convert -m " + iq + " -o " + q4 + " --type Q4_K_M");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const double from_iq = our_perplexity(iq, eval), requantized = our_perplexity(q4, eval);
  std::printf("  IQ3_XXS mix re-quantized to Q4_K_M: llmpress %.4f, llama-perplexity %.4f\n", requantized,
              llamacpp_perplexity(bin, q4, eval));  // llama.cpp loads what we re-encoded
  EXPECT_LT(requantized, from_iq * 1.1);
  r = test::run_llmpress("quantize -m " + iq + " -o " + out_dir +
                         "/gutenberg-IQ3_XXS-to-Q8_0.gguf --method rtn --format gguf --type Q8_0 --no-progress");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  r = test::run_llmpress("convert -m " + iq + " -o " + out_dir + "/bad.gguf --type IQ3_XXS");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("IQ3_XXS needs importance weights"), std::string::npos) << r.err;
}

}  // namespace
}  // namespace llmpress
