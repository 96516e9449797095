#!/usr/bin/env node
// Perplexity of a GGUF model under llama.cpp (node-llama-cpp's prebuilt build), computed exactly as
// llama.cpp's llama-perplexity computes it (tools/perplexity/perplexity.cpp, perplexity()):
//   - the file is read whole, one trailing '\n' dropped, and tokenized with the model's own tokenizer,
//     BOS first when the vocabulary adds one (common_tokenize(..., add_special = true));
//   - the tokens are cut into floor(n / n_ctx) non-overlapping windows of n_ctx tokens (at most --chunks);
//   - each window is evaluated from an empty KV cache with its first token replaced by BOS;
//   - only the second half is scored: the logits at positions n_ctx/2 .. n_ctx-2 predict the tokens at
//     n_ctx/2+1 .. n_ctx-1 (n_ctx - n_ctx/2 - 1 tokens per window);
//   - ppl = exp(mean NLL); stderr = ppl * sqrt((mean(NLL^2) - mean(NLL)^2) / (count - 1)), the
//     "+/-" of llama-perplexity's "Final estimate: PPL = X +/- Y".
// Output: one JSON line on stdout, {"ppl", "stderr", "tokens", "chunks", "scored", "n_ctx", "nll"}.
import { parseArgs, fail, defaultThreads, loadModel, createSequence, readTextFile, tokenizeLikeLlamaCpp } from "./lib.mjs";

const usage = `usage: node perplexity.mjs -m MODEL.gguf -f TEXT [-c N_CTX] [--chunks K] [--lora ADAPTER.gguf] [-t THREADS] [--verbose]
  -m, --model    GGUF file
  --lora FILE    apply a LoRA adapter GGUF at scale 1 (llama-perplexity --lora)
  -f, --file     UTF-8 text file
  -c, --ctx      window size n_ctx (default 512, as llama-perplexity)
  --chunks K     score at most K windows (default: all)
  -t, --threads  CPU threads (default ${defaultThreads()})
  --verbose      llama.cpp's log and llama-perplexity's running "[i]ppl," line on stderr
`;
const spec = { m: "string", model: "string", f: "string", file: "string", c: "int", ctx: "int", chunks: "int",
               t: "int", threads: "int", verbose: "bool", lora: "string" };
const args = parseArgs(process.argv.slice(2), spec, usage);
const modelPath = args.m ?? args.model;
const textPath = args.f ?? args.file;
const nCtx = args.c ?? args.ctx ?? 512;
const maxChunks = args.chunks ?? -1;
const threads = args.t ?? args.threads ?? defaultThreads();
const verbose = !!args.verbose;
if (!modelPath || !textPath) fail(`-m and -f are required\n${usage}`);
if (nCtx < 4) fail(`-c must be at least 4, got ${nCtx}`);

const { model } = await loadModel(modelPath, threads, verbose);
const tokens = tokenizeLikeLlamaCpp(model, readTextFile(textPath));
if (tokens.length < 2 * nCtx) {
  fail(`you need at least ${2 * nCtx} tokens to evaluate perplexity with a context of ${nCtx}; ` +
       `${textPath} tokenizes to only ${tokens.length} tokens`);
}
const nChunkMax = Math.floor(tokens.length / nCtx);
const nChunk = maxChunks < 0 ? nChunkMax : Math.min(maxChunks, nChunkMax);
const first = Math.floor(nCtx / 2);
const addBos = model.tokens.shouldPrependBosToken && model.tokens.bos != null;

const { sequence } = await createSequence(model, nCtx, threads, args.lora);
let nll = 0;
let nll2 = 0;
let count = 0;
for (let chunk = 0; chunk < nChunk; chunk++) {
  const window = tokens.slice(chunk * nCtx, (chunk + 1) * nCtx);
  if (addBos) window[0] = model.tokens.bos;
  // Next-token distributions (the raw softmax of the logits: the default sampler is greedy, which does
  // not change them) for the positions whose prediction is scored.
  const input = window.map((token, pos) =>
    pos >= first && pos < nCtx - 1 ? [token, { generateNext: { probabilities: true } }] : token);
  await sequence.clearHistory();
  const output = await sequence.controlledEvaluate(input);
  for (let pos = first; pos < nCtx - 1; pos++) {
    const probabilities = output[pos]?.next?.probabilities;
    if (!probabilities) fail(`llama.cpp returned no probabilities for chunk ${chunk + 1}, position ${pos}`);
    const p = probabilities.get(window[pos + 1]) ?? 0;
    // A probability that underflowed float32 (logit more than ~103 below the maximum): llama-perplexity's
    // double log-softmax would give a finite value; report it instead of averaging an infinity.
    if (!(p > 0)) fail(`probability underflow for token ${window[pos + 1]} in chunk ${chunk + 1}, position ${pos}`);
    const v = -Math.log(p);
    nll += v;
    nll2 += v * v;
  }
  count += nCtx - first - 1;
  if (verbose) process.stderr.write(`[${chunk + 1}]${Math.exp(nll / count).toFixed(4)},`);
}
if (verbose) process.stderr.write("\n");

const meanNll = nll / count;
const ppl = Math.exp(meanNll);
const variance = nll2 / count - meanNll * meanNll;
const stderr = variance > 0 ? ppl * Math.sqrt(variance / (count - 1)) : 0;
if (verbose) process.stderr.write(`Final estimate: PPL = ${ppl.toFixed(4)} +/- ${stderr.toFixed(5)}\n`);
process.stdout.write(JSON.stringify({ ppl, stderr, tokens: tokens.length, chunks: nChunk, scored: count, n_ctx: nCtx,
                                      nll: meanNll }) + "\n");
// Skip the addon's teardown: exiting is faster and the process holds nothing worth flushing.
process.exit(0);
