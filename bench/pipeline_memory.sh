#!/usr/bin/env bash
# Peak memory and wall time of the pipeline on a random-init model of TinyLlama-1.1B's shape
# (hidden 2048, intermediate 5632, 32 heads / 4 kv heads, vocab 32000; F16 safetensors, 2.2 GB at
# 22 layers), with 128 x 512 calibration tokens:
#   1. quantize: format-aware GPTQ to a Q4_K_M GGUF
#   2. run: a two-stage recipe, SparseGPT 2:4 -> GPTQ int4 g128, written as a GPTQ checkpoint
#   3. perplexity on the Q4_K_M file, by llmpress and (with LLAMACPP_BIN) by llama-perplexity
# Every output is written one decoder layer at a time and the calibration activations are held
# once, so the peaks do not grow with the depth: LAYERS (default 22) can be lowered on a slow
# machine (time per layer is printed; the full model's time is LAYERS_FULL / LAYERS times more).
#
#   bench/pipeline_memory.sh [BUILD_DIR]
#
# Environment: SHARED (../shared), THREADS (2), LAYERS (22), NSAMPLES (128), SEQLEN (512),
# CHUNKS (8, perplexity windows of 512), LAYERS_FULL (22), LLAMACPP_BIN (folder with llama-perplexity),
# WORK (/tmp/llmpress-bench-pipeline).
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${1:-build}
SHARED=${SHARED:-../shared}
THREADS=${THREADS:-2}
LAYERS=${LAYERS:-22}
NSAMPLES=${NSAMPLES:-128}
SEQLEN=${SEQLEN:-512}
CHUNKS=${CHUNKS:-8}
WORK=${WORK:-/tmp/llmpress-bench-pipeline}
mkdir -p "$WORK"
MODEL="$WORK/tinyllama-$LAYERS-layers"
# A SentencePiece tokenizer for the calibration text (ids < 512 fit the 32000-row embedding).
TOKENIZER="$SHARED/models/stories260K/tok512.model"
[ -d "$MODEL" ] || "$BUILD/make_random_model" -o "$MODEL" --layers "$LAYERS" > /dev/null
CALIB="--calib $SHARED/data/tinystories-calib.txt --nsamples $NSAMPLES --seqlen $SEQLEN"

measure() {  # label, command...
  local label=$1; shift
  /usr/bin/time -v "$@" > "$WORK/$label.out" 2> "$WORK/$label.err" || { tail -5 "$WORK/$label.err"; exit 1; }
  local rss wall
  rss=$(grep "Maximum resident" "$WORK/$label.err" | awk '{print $6}')
  wall=$(grep "Elapsed (wall" "$WORK/$label.err" | awk '{print $8}')
  printf "%-28s peak RSS %8.0f MiB   wall %s\n" "$label" "$(echo "$rss / 1024" | bc -l)" "$wall"
}

echo "model: $MODEL ($LAYERS layers, $(du -sh "$MODEL" | cut -f1)), $NSAMPLES x $SEQLEN calibration tokens, $THREADS threads"
measure "gptq-q4_k_m" "$BUILD/llmpress" quantize -m "$MODEL" --tokenizer "$TOKENIZER" -o "$WORK/q4km.gguf" \
  --type Q4_K_M --method gptq $CALIB -t "$THREADS" --no-progress
cat > "$WORK/recipe.yaml" <<YAML
model: $MODEL
tokenizer: $TOKENIZER
calibration: {file: $SHARED/data/tinystories-calib.txt, nsamples: $NSAMPLES, seqlen: $SEQLEN}
stages:
  - method: sparsegpt
    pattern: '2:4'
  - method: gptq
    bits: 4
    group: 128
output: {path: $WORK/sparse-int4, format: gptq}
YAML
measure "sparsegpt-2:4+gptq-int4" "$BUILD/llmpress" run "$WORK/recipe.yaml" -t "$THREADS" --no-progress
grep -E "^stage" "$WORK/gptq-q4_k_m.out" "$WORK/sparsegpt-2:4+gptq-int4.out" | sed 's/^/  /'
ls -l "$WORK/q4km.gguf" | awk '{printf "  q4km.gguf: %.0f MiB\n", $5 / 1048576}'
EVAL="$SHARED/data/tinystories-eval.txt"
measure "perplexity-q4_k_m-llmpress" "$BUILD/llmpress" perplexity -m "$WORK/q4km.gguf" -f "$EVAL" -c 512 \
  --chunks "$CHUNKS" --llamacpp -t "$THREADS" --no-progress
grep "ppl =" "$WORK/perplexity-q4_k_m-llmpress.out" | sed 's/^/  /'
if [ -n "${LLAMACPP_BIN:-}" ]; then
  measure "perplexity-q4_k_m-llama.cpp" "$LLAMACPP_BIN/llama-perplexity" -m "$WORK/q4km.gguf" -f "$EVAL" -c 512 \
    --chunks "$CHUNKS" -t "$THREADS"
  grep "Final estimate" "$WORK/perplexity-q4_k_m-llama.cpp.err" | sed 's/^/  /'
fi
