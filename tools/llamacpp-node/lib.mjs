// Shared by perplexity.mjs and generate.mjs: loads node-llama-cpp's prebuilt llama.cpp (CPU only) and a
// GGUF model, never downloading or compiling anything (the machines running this have no internet).
import fs from "node:fs";
import os from "node:os";

// Never download llama.cpp sources or build them: only the prebuilt binary from @node-llama-cpp/linux-x64.
process.env.NODE_LLAMA_CPP_SKIP_DOWNLOAD = "true";
process.env.NODE_LLAMA_CPP_GPU = "false";

// Exits with status 2 and one `error:` line (the C++ helper prints it in its failure message).
export function fail(message) {
  process.stderr.write(`error: ${message}\n`);
  process.exit(2);
}

// Minimal argv parser: `--name value` pairs and `--flag` booleans; `spec` maps names to "string",
// "int" or "bool". Unknown options are errors.
export function parseArgs(argv, spec, usage) {
  const out = {};
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (arg === "-h" || arg === "--help") {
      process.stdout.write(usage);
      process.exit(0);
    }
    const name = arg.replace(/^--?/, "");
    const type = spec[name];
    if (!arg.startsWith("-") || type === undefined) fail(`unknown argument '${arg}'\n${usage}`);
    if (type === "bool") {
      out[name] = true;
      continue;
    }
    if (i + 1 >= argv.length) fail(`${arg} needs a value`);
    const value = argv[++i];
    if (type === "int") {
      if (!/^-?\d+$/.test(value)) fail(`${arg} needs an integer, got '${value}'`);
      out[name] = Number.parseInt(value, 10);
    } else {
      out[name] = value;
    }
  }
  return out;
}

export function defaultThreads() {
  return Math.max(1, Math.min(4, os.availableParallelism ? os.availableParallelism() : os.cpus().length));
}

// The llama.cpp instance and the model. `threads` caps the CPU threads llama.cpp uses.
export async function loadModel(modelPath, threads, verbose) {
  if (!fs.existsSync(modelPath)) fail(`no such model file: ${modelPath}`);
  let nodeLlamaCpp;
  try {
    nodeLlamaCpp = await import("node-llama-cpp");
  } catch (err) {
    fail(`node-llama-cpp is not installed (run scripts/setup.sh, or npm ci in tools/llamacpp-node): ${err.message}`);
  }
  const { getLlama, LlamaLogLevel } = nodeLlamaCpp;
  let llama;
  try {
    llama = await getLlama({
      gpu: false,
      build: "never",
      usePrebuiltBinaries: true,
      skipDownload: true,
      progressLogs: false,
      maxThreads: threads,
      logLevel: verbose ? LlamaLogLevel.info : LlamaLogLevel.error,
    });
  } catch (err) {
    fail(`cannot load node-llama-cpp's prebuilt llama.cpp: ${err.message}`);
  }
  let model;
  try {
    model = await llama.loadModel({ modelPath, gpuLayers: 0, useMmap: true });
  } catch (err) {
    fail(`llama.cpp cannot load ${modelPath}: ${err.message}`);
  }
  return { llama, model };
}

// A context with one sequence that holds `tokens` tokens. node-llama-cpp shifts the context when only one
// cell is left free, so one extra cell is reserved: a window of exactly n_ctx tokens is evaluated unshifted.
// `lora`: a llama.cpp LoRA adapter GGUF applied at scale 1 (llama-perplexity --lora FILE), or undefined.
export async function createSequence(model, tokens, threads, lora) {
  if (lora && !fs.existsSync(lora)) fail(`no such LoRA adapter file: ${lora}`);
  let context;
  try {
    context = await model.createContext({
      contextSize: tokens + 1,
      batchSize: tokens + 1,
      sequences: 1,
      threads,
      flashAttention: false,
      ...(lora ? { lora: { adapters: [{ filePath: lora, scale: 1 }] } } : {}),
    });
  } catch (err) {
    fail(`llama.cpp cannot create a context${lora ? " with the adapter " + lora : ""}: ${err.message}`);
  }
  return { context, sequence: context.getSequence() };
}

// Text as llama.cpp's `-f FILE` reads it: the whole file, one trailing '\n' removed.
export function readTextFile(path) {
  if (!fs.existsSync(path)) fail(`no such text file: ${path}`);
  let text = fs.readFileSync(path, "utf8");
  if (text.endsWith("\n")) text = text.slice(0, -1);
  return text;
}

// common_tokenize(ctx, text, add_special = true, parse_special = false), as llama-perplexity and
// llama-simple call it: the model's tokenizer, BOS first when the vocabulary asks for it.
export function tokenizeLikeLlamaCpp(model, text, addBos = true) {
  const tokens = Array.from(model.tokenize(text, false));
  if (addBos && model.tokens.shouldPrependBosToken && model.tokens.bos != null) tokens.unshift(model.tokens.bos);
  return tokens;
}
