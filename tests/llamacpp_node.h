#pragma once
// Runs a real llama.cpp on GGUF files from the tests, without a llama.cpp build of our own: the prebuilt
// CPU llama.cpp that node-llama-cpp ships, installed by scripts/setup.sh into tools/llamacpp-node
// (node-llama-cpp 3.21.1, pinned by its package-lock.json), driven by the scripts there:
//   perplexity.mjs  llama-perplexity's number (BOS per window, second half scored) and its "+/-"
//   generate.mjs    greedy token ids
//
//   TEST(X, Y) {
//     LLMPRESS_REQUIRE_LLAMACPP_NODE();  // skips with the reason when node / the module is absent
//     const auto r = test::llamacpp_node_perplexity(gguf, text, 256, 8);
//     ASSERT_TRUE(r);  // on failure the script's output is already in the test log
//     EXPECT_NEAR(r->ppl, 3.4018, 1e-4);
//   }
//
// llamacpp_perplexity() / LLMPRESS_REQUIRE_LLAMACPP() also accept a llama.cpp build: when
// LLMPRESS_LLAMACPP_BIN names a folder with llama-perplexity, that binary is used instead of node.
// Environment: LLMPRESS_NODE (node binary, default `node` on PATH), LLMPRESS_LLAMACPP_NODE_DIR (the
// tools/llamacpp-node folder, default from CMake), LLMPRESS_LLAMACPP_THREADS (default 1 for node, 2 for
// LLMPRESS_LLAMACPP_BIN).
#include <gtest/gtest.h>

#include <array>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <regex>
#include <string>
#include <sys/wait.h>
#include <vector>

#ifndef LLMPRESS_LLAMACPP_NODE_DIR_DEFAULT
#define LLMPRESS_LLAMACPP_NODE_DIR_DEFAULT ""
#endif

namespace llmpress::test {

namespace llamacpp_detail {

inline std::string env_or(const char* name, const std::string& fallback) {
  const char* v = std::getenv(name);
  return v && *v ? std::string(v) : fallback;
}

// 'text' for /bin/sh, whatever it contains.
inline std::string shell_quote(const std::string& s) {
  std::string out = "'";
  for (char c : s) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

struct RunOutput {
  int status = -1;  // exit status, -1 when the command could not be started or was killed
  std::string output;  // stdout and stderr together
};

inline RunOutput run(const std::string& command) {
  RunOutput r;
  FILE* pipe = popen((command + " 2>&1").c_str(), "r");
  if (!pipe) return r;
  std::array<char, 4096> buf;
  while (size_t n = std::fread(buf.data(), 1, buf.size(), pipe)) r.output.append(buf.data(), n);
  const int raw = pclose(pipe);
  r.status = raw != -1 && WIFEXITED(raw) ? WEXITSTATUS(raw) : -1;
  return r;
}

inline std::string tail(const std::string& s, size_t n = 3000) { return s.size() > n ? s.substr(s.size() - n) : s; }

// The last line of `output` that parses as a JSON object (the scripts print exactly one).
inline std::optional<nlohmann::json> last_json_line(const std::string& output) {
  size_t end = output.size();
  while (end > 0) {
    size_t begin = output.rfind('\n', end - 1);
    begin = begin == std::string::npos ? 0 : begin + 1;
    const std::string line = output.substr(begin, end - begin);
    if (!line.empty() && line[0] == '{') {
      nlohmann::json j = nlohmann::json::parse(line, nullptr, false);
      if (!j.is_discarded() && j.is_object()) return j;
    }
    if (begin == 0) break;
    end = begin - 1;
  }
  return std::nullopt;
}

// CPU threads for llama.cpp. The node runner defaults to 1: the test models are tiny, and on a loaded
// machine ggml's spinning worker threads make -t 2 about 4x slower than -t 1 (stories260K, 2 cores).
inline std::string threads(const char* fallback) { return env_or("LLMPRESS_LLAMACPP_THREADS", fallback); }

}  // namespace llamacpp_detail

namespace lc = llamacpp_detail;

inline std::string llamacpp_node_dir() {
  return lc::env_or("LLMPRESS_LLAMACPP_NODE_DIR", LLMPRESS_LLAMACPP_NODE_DIR_DEFAULT);
}
inline std::string llamacpp_node_binary() { return lc::env_or("LLMPRESS_NODE", "node"); }

// `node .../tools/llamacpp-node/SCRIPT`, quoted for the shell.
inline std::string llamacpp_node_script(const std::string& script) {
  return lc::shell_quote(llamacpp_node_binary()) + " " + lc::shell_quote(llamacpp_node_dir() + "/" + script);
}

// Empty when the node runner can run; otherwise why not (node absent or older than 20, module not
// installed). Computed once per test binary.
inline const std::string& llamacpp_node_unavailable() {
  static const std::string reason = [] () -> std::string {
    const std::string dir = llamacpp_node_dir();
    if (dir.empty() || !std::filesystem::exists(dir + "/perplexity.mjs"))
      return "no tools/llamacpp-node folder at '" + dir + "' (set LLMPRESS_LLAMACPP_NODE_DIR)";
    const auto version = lc::run(lc::shell_quote(llamacpp_node_binary()) + " -p process.versions.node");
    std::smatch m;
    if (version.status != 0 || !std::regex_search(version.output, m, std::regex("^(\\d+)\\.")))
      return "no Node.js (`" + llamacpp_node_binary() + "` does not run; set LLMPRESS_NODE, Node.js >= 20 needed)";
    if (std::stoi(m[1]) < 20) return "Node.js " + m[0].str() + "x is too old for node-llama-cpp (>= 20 needed)";
    if (!std::filesystem::exists(dir + "/node_modules/node-llama-cpp/package.json"))
      return "node-llama-cpp is not installed in " + dir + " (run scripts/setup.sh)";
    return "";
  }();
  return reason;
}

// llama-perplexity from a llama.cpp build, when LLMPRESS_LLAMACPP_BIN names its folder; empty otherwise.
inline std::string llamacpp_bin() { return lc::env_or("LLMPRESS_LLAMACPP_BIN", ""); }

// Empty when llamacpp_perplexity() can run (a llama.cpp build or the node runner); otherwise why not.
inline std::string llamacpp_unavailable() {
  if (!llamacpp_bin().empty()) return "";
  const std::string& node = llamacpp_node_unavailable();
  return node.empty() ? "" : node + "; or set LLMPRESS_LLAMACPP_BIN to a folder with llama.cpp's llama-perplexity";
}

struct LlamaCppPerplexity {
  double ppl = 0;
  double stderr_ = 0;  // llama-perplexity's "+/-"
  long tokens = 0;     // tokens of the whole text, BOS included
  int chunks = 0;      // windows scored
  long scored = 0;     // tokens scored (chunks * (n_ctx - n_ctx/2 - 1))
};

// llama-perplexity -m gguf -f text -c ctx [--chunks chunks] (chunks < 0: the whole text) through the node
// runner. nullopt, with a test failure carrying the script's output, when llama.cpp failed.
// `lora`: an adapter GGUF applied as llama-perplexity --lora applies it (empty: none).
inline std::optional<LlamaCppPerplexity> llamacpp_node_perplexity(const std::string& gguf, const std::string& text,
                                                                  int ctx, int chunks = -1,
                                                                  const std::string& lora = "") {
  std::string command = llamacpp_node_script("perplexity.mjs") + " -m " + lc::shell_quote(gguf) + " -f " +
                        lc::shell_quote(text) + " -c " + std::to_string(ctx) + " -t " + lc::threads("1");
  if (chunks >= 0) command += " --chunks " + std::to_string(chunks);
  if (!lora.empty()) command += " --lora " + lc::shell_quote(lora);
  const lc::RunOutput r = lc::run(command);
  const auto j = lc::last_json_line(r.output);
  if (r.status != 0 || !j || !j->contains("ppl")) {
    ADD_FAILURE() << "llama.cpp (node-llama-cpp) perplexity failed on " << gguf << " (exit " << r.status << "):\n"
                  << lc::tail(r.output);
    return std::nullopt;
  }
  LlamaCppPerplexity out;
  out.ppl = j->at("ppl").get<double>();
  out.stderr_ = j->at("stderr").get<double>();
  out.tokens = j->at("tokens").get<long>();
  out.chunks = j->at("chunks").get<int>();
  out.scored = j->at("scored").get<long>();
  return out;
}

// llama.cpp's final perplexity of gguf on text: LLMPRESS_LLAMACPP_BIN's llama-perplexity when that is set,
// the node runner otherwise. nullopt, with a test failure carrying llama.cpp's output, when it failed.
inline std::optional<double> llamacpp_perplexity(const std::string& gguf, const std::string& text, int ctx,
                                                 int chunks = -1, const std::string& lora = "") {
  const std::string bin = llamacpp_bin();
  if (bin.empty()) {
    const auto r = llamacpp_node_perplexity(gguf, text, ctx, chunks, lora);
    return r ? std::optional<double>(r->ppl) : std::nullopt;
  }
  std::string command = lc::shell_quote(bin + "/llama-perplexity") + " -m " + lc::shell_quote(gguf) + " -f " +
                        lc::shell_quote(text) + " -c " + std::to_string(ctx) + " -t " + lc::threads("2");
  if (chunks >= 0) command += " --chunks " + std::to_string(chunks);
  if (!lora.empty()) command += " --lora " + lc::shell_quote(lora);
  const lc::RunOutput r = lc::run(command);
  std::smatch m;
  if (!std::regex_search(r.output, m, std::regex("Final estimate: PPL = ([0-9.]+)"))) {
    ADD_FAILURE() << "llama-perplexity failed on " << gguf << " (exit " << r.status << "):\n" << lc::tail(r.output);
    return std::nullopt;
  }
  return std::stod(m[1]);
}

struct LlamaCppGeneration {
  std::vector<int> prompt_tokens;  // BOS first (alone for an empty prompt)
  std::vector<int> tokens;         // the generated ids, prompt excluded
  std::string text;                // their detokenized text
};

// Greedy (argmax) generation of n tokens after prompt (empty: from BOS) with llama.cpp through the node
// runner. nullopt, with a test failure carrying the script's output, when llama.cpp failed.
inline std::optional<LlamaCppGeneration> llamacpp_greedy(const std::string& gguf, const std::string& prompt, int n) {
  const std::string command = llamacpp_node_script("generate.mjs") + " -m " + lc::shell_quote(gguf) + " -p " +
                              lc::shell_quote(prompt) + " -n " + std::to_string(n) + " -t " + lc::threads("1");
  const lc::RunOutput r = lc::run(command);
  const auto j = lc::last_json_line(r.output);
  if (r.status != 0 || !j || !j->contains("tokens")) {
    ADD_FAILURE() << "llama.cpp (node-llama-cpp) generation failed on " << gguf << " (exit " << r.status << "):\n"
                  << lc::tail(r.output);
    return std::nullopt;
  }
  LlamaCppGeneration out;
  out.prompt_tokens = j->at("prompt_tokens").get<std::vector<int>>();
  out.tokens = j->at("tokens").get<std::vector<int>>();
  out.text = j->at("text").get<std::string>();
  return out;
}

}  // namespace llmpress::test

// Skips the current test, with the reason, unless the node runner (node + node-llama-cpp) can run.
#define LLMPRESS_REQUIRE_LLAMACPP_NODE()                                                              \
  do {                                                                                                 \
    if (const std::string& why_ = ::llmpress::test::llamacpp_node_unavailable(); !why_.empty())        \
      GTEST_SKIP() << "needs llama.cpp through node-llama-cpp: " << why_;                              \
  } while (0)

// Skips the current test, with the reason, unless llamacpp_perplexity() can run (LLMPRESS_LLAMACPP_BIN or
// the node runner).
#define LLMPRESS_REQUIRE_LLAMACPP()                                                                    \
  do {                                                                                                 \
    if (const std::string why_ = ::llmpress::test::llamacpp_unavailable(); !why_.empty())              \
      GTEST_SKIP() << "needs llama.cpp: " << why_;                                                     \
  } while (0)
