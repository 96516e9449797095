#!/usr/bin/env node
// Greedy (argmax) generation of a GGUF model under llama.cpp (node-llama-cpp's prebuilt build), so tests can
// compare generations token for token. The prompt is tokenized as llama.cpp's examples tokenize it
// (BOS first when the vocabulary adds one); an empty prompt starts from BOS alone.
// Output: one JSON line on stdout, {"prompt_tokens": [...], "tokens": [...], "text": "..."}:
// the generated ids (prompt excluded) and their detokenized text.
import { parseArgs, fail, defaultThreads, loadModel, createSequence, tokenizeLikeLlamaCpp } from "./lib.mjs";

const usage = `usage: node generate.mjs -m MODEL.gguf [-p PROMPT] [-n N] [--stop-eog] [-t THREADS] [--verbose]
  -m, --model    GGUF file
  -p, --prompt   prompt text (default: empty, generation starts from BOS)
  -n, --n-predict  tokens to generate (default 32)
  --stop-eog     stop early at an end-of-generation token (EOS, EOT...); by default exactly N tokens
  -t, --threads  CPU threads (default ${defaultThreads()})
  --verbose      llama.cpp's log on stderr
`;
const spec = { m: "string", model: "string", p: "string", prompt: "string", n: "int", "n-predict": "int",
               "stop-eog": "bool", t: "int", threads: "int", verbose: "bool" };
const args = parseArgs(process.argv.slice(2), spec, usage);
const modelPath = args.m ?? args.model;
const prompt = args.p ?? args.prompt ?? "";
const nPredict = args.n ?? args["n-predict"] ?? 32;
const threads = args.t ?? args.threads ?? defaultThreads();
if (!modelPath) fail(`-m is required\n${usage}`);
if (nPredict < 0) fail(`-n must not be negative, got ${nPredict}`);

const { model } = await loadModel(modelPath, threads, !!args.verbose);
const promptTokens = prompt === "" ? [model.tokens.bos] : tokenizeLikeLlamaCpp(model, prompt);
if (promptTokens.length === 0 || promptTokens[0] == null) fail("the prompt is empty and the model has no BOS token");
const { sequence } = await createSequence(model, promptTokens.length + nPredict, threads);

// temperature 0 (node-llama-cpp's default) is llama.cpp's greedy sampler: argmax of the raw logits.
const greedy = { generateNext: { token: true } };
const generated = [];
let input = [...promptTokens.slice(0, -1), [promptTokens[promptTokens.length - 1], greedy]];
while (generated.length < nPredict) {
  const output = await sequence.controlledEvaluate(input);
  const token = output[input.length - 1]?.next?.token;
  if (token == null) fail(`llama.cpp sampled no token after ${generated.length} tokens`);
  generated.push(token);
  if (args["stop-eog"] && model.isEogToken(token)) break;
  input = [[token, greedy]];
}
process.stdout.write(JSON.stringify({ prompt_tokens: promptTokens, tokens: generated,
                                      text: model.detokenize(generated) }) + "\n");
process.exit(0);
