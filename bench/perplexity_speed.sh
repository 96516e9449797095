#!/usr/bin/env bash
# Perplexity throughput (tokens/s) and peak memory of llmpress, beside llama.cpp's llama-perplexity on
# the same F32 GGUF file, the same text, window and thread count (llama.cpp's convention: --llamacpp).
#
#   bench/perplexity_speed.sh [BUILD_DIR]
#
# Environment: SHARED (default ../shared), THREADS (default 2), LLAMACPP_BIN (folder with
# llama-perplexity; its column is left empty without it), WORK (scratch folder, default /tmp/llmpress-bench).
# Prints one Markdown table row per model.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${1:-build}
SHARED=${SHARED:-../shared}
THREADS=${THREADS:-2}
WORK=${WORK:-/tmp/llmpress-bench}
mkdir -p "$WORK"
LLMPRESS="$BUILD/llmpress"

# peak_kb FILE: GNU time's maximum resident set size in KiB, recorded by /usr/bin/time -o FILE.
run_ours() {  # model text ctx chunks -> "tok/s ppl peak_MiB"
  /usr/bin/time -f "%M" -o "$WORK/time.txt" "$LLMPRESS" perplexity -m "$1" -f "$2" -c "$3" --chunks "$4" \
    --llamacpp --json --no-progress -t "$THREADS" > "$WORK/ours.json" 2>/dev/null
  python3 -c "import json;d=json.load(open('$WORK/ours.json'));print('%.0f %.4f' % (d['tokens_per_second'], d['perplexity']), end=' ')"
  echo $(( $(tail -1 "$WORK/time.txt") / 1024 ))
}
run_llamacpp() {
  [ -n "${LLAMACPP_BIN:-}" ] || { echo "- - -"; return; }
  /usr/bin/time -f "%M" -o "$WORK/time.txt" "$LLAMACPP_BIN/llama-perplexity" -m "$1" -f "$2" -c "$3" --chunks "$4" \
    -t "$THREADS" > "$WORK/llamacpp.txt" 2>&1
  local tps ppl
  tps=$(grep -oE "prompt eval time.* ([0-9.]+) tokens per second" "$WORK/llamacpp.txt" | grep -oE "[0-9.]+ tokens per second" | cut -d' ' -f1)
  ppl=$(grep -oE "Final estimate: PPL = [0-9.]+" "$WORK/llamacpp.txt" | grep -oE "[0-9.]+$")
  printf "%.0f %s %s\n" "$tps" "$ppl" $(( $(tail -1 "$WORK/time.txt") / 1024 ))
}
row() {  # label model text ctx chunks
  read -r our_tps our_ppl our_mem <<< "$(run_ours "$2" "$3" "$4" "$5")"
  read -r cpp_tps cpp_ppl cpp_mem <<< "$(run_llamacpp "$2" "$3" "$4" "$5")"
  local ratio="-"
  [ "$cpp_tps" != "-" ] && ratio=$(python3 -c "print('%.2f' % ($our_tps / $cpp_tps))")
  echo "| $1 | $4 x $5 | $our_tps | $our_mem | $our_ppl | $cpp_tps | $cpp_mem | $cpp_ppl | $ratio |"
}

"$LLMPRESS" convert -m "$SHARED/models/gutenberg-dev-llama-5m" -o "$WORK/gutenberg-F32.gguf" > /dev/null
[ -f "$WORK/tinyllama-F32.gguf" ] || "$BUILD/make_random_model" -o "$WORK/tinyllama-hf" --gguf "$WORK/tinyllama-F32.gguf" > /dev/null

echo "| model | ctx x chunks | llmpress tok/s | llmpress peak MiB | llmpress ppl | llama.cpp tok/s | llama.cpp peak MiB | llama.cpp ppl | speed ratio |"
echo "|---|---|---|---|---|---|---|---|---|"
row "stories260K F32" "$SHARED/models/stories260K/stories260K-F32.gguf" "$SHARED/data/tinystories-eval.txt" 256 200
row "gutenberg-dev-llama-5m F32" "$WORK/gutenberg-F32.gguf" "$SHARED/data/gutenberg-dev-eval.txt" 256 100
row "random TinyLlama-1.1B shape F32" "$WORK/tinyllama-F32.gguf" "$SHARED/data/tinystories-eval.txt" 256 4
