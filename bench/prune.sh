#!/usr/bin/env bash
# Perplexity after unstructured (50/60/70%) and N:M (2:4, 4:8) pruning with magnitude (per layer),
# Wanda and SparseGPT, SparseGPT 2:4 with joint 4-bit quantization (asymmetric, group 32), and
# structured pruning (attention heads, MLP channels, whole layers) on the two shared trained models
# (GPTQ convention, -c 256, the first CHUNKS windows of the eval file). Prints Markdown tables.
#
#   bench/prune.sh [BUILD_DIR]
#
# Environment: SHARED (default ../shared), THREADS (default 2), NSAMPLES (64), SEQLEN (256), CHUNKS
# (eval windows of 256 tokens, default 100; 0: the whole file),
# WORK (scratch folder, default /tmp/llmpress-bench-prune), ONLY (run only the model of this label),
# METHODS (rows of the unstructured table, default "magnitude wanda sparsegpt").
# stories260K's down_proj has 172 inputs, not a multiple of 8: its 4:8 runs keep down_proj dense.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${1:-build}
SHARED=${SHARED:-../shared}
THREADS=${THREADS:-2}
NSAMPLES=${NSAMPLES:-64}
SEQLEN=${SEQLEN:-256}
CHUNKS=${CHUNKS:-100}
WORK=${WORK:-/tmp/llmpress-bench-prune}
mkdir -p "$WORK"
L="$BUILD/llmpress"

ppl() {  # model text -> perplexity
  local limit=()
  [ "$CHUNKS" -gt 0 ] && limit=(--chunks "$CHUNKS")
  "$L" perplexity -m "$1" -f "$2" -c 256 "${limit[@]}" --json --no-progress -t "$THREADS" 2>/dev/null |
    python3 -c "import json,sys; print('%.4f' % json.load(sys.stdin)['perplexity'])"
}
structured() {  # model calib args... -> "perplexity | parameters removed"
  local model=$1 calib=$2
  shift 2
  rm -rf "$WORK/p"
  "$L" prune -m "$model" -o "$WORK/p" --calib "$calib" --nsamples "$NSAMPLES" --seqlen "$SEQLEN" -t "$THREADS" \
    --no-progress "$@" > "$WORK/prune.log" 2>&1 || { cat "$WORK/prune.log" >&2; exit 1; }
  echo "$(ppl "$WORK/p" "$EVAL") | $(sed -n 's/^parameters: .*(\(.*\) removed)$/\1/p' "$WORK/prune.log")"
}
prune() {  # model calib args... -> prints the perplexity of the result on $EVAL
  local model=$1 calib=$2
  shift 2
  rm -rf "$WORK/p"
  "$L" prune -m "$model" -o "$WORK/p" --calib "$calib" --nsamples "$NSAMPLES" --seqlen "$SEQLEN" -t "$THREADS" \
    --no-progress "$@" > "$WORK/prune.log" 2>&1 || { cat "$WORK/prune.log" >&2; exit 1; }
  ppl "$WORK/p" "$EVAL"
}
table() {  # label model calib eval skip48
  local label=$1 model=$2 calib=$3 skip48=$5
  [ -z "${ONLY:-}" ] || [ "$ONLY" = "$label" ] || return 0
  EVAL=$4
  echo "#### $label (dense: $(ppl "$model" "$EVAL"))"
  echo
  echo "| method | 50% | 60% | 70% | 2:4 | 4:8 |"
  echo "|---|---|---|---|---|---|"
  for method in ${METHODS:-magnitude wanda sparsegpt}; do
    local cells="| $method"
    for s in 0.5 0.6 0.7; do cells+=" | $(prune "$model" "$calib" --method $method --sparsity $s)"; done
    cells+=" | $(prune "$model" "$calib" --method $method --pattern 2:4)"
    cells+=" | $(prune "$model" "$calib" --method $method --pattern 4:8 ${skip48:+--skip "$skip48"})"
    echo "$cells |"
  done
  echo
  echo "SparseGPT 2:4 + joint 4-bit (asym, group 32): $(prune "$model" "$calib" --method sparsegpt --pattern 2:4 --bits 4 --group 32)"
  echo
  echo "| structured | perplexity | parameters removed |"
  echo "|---|---|---|"
  shift 5
  local args
  for args in "$@"; do
    echo "| $args | $(structured "$model" "$calib" $args) |"
  done
  echo
}

# Channel ratios chosen so that about 20% and 30% of all parameters go (MLP channels are 64% of
# stories260K's parameters and 71% of gutenberg's); heads: one kv group of stories260K's four and of
# gutenberg's two.
table stories260K "$SHARED/models/stories260K/stories260K.bin" "$SHARED/data/tinystories-calib.txt" \
  "$SHARED/data/tinystories-eval.txt" down_proj \
  "--method heads --ratio 0.25" "--method heads --ratio 0.5" "--method channels --ratio 0.31" \
  "--method channels --ratio 0.47" "--method layers --count 1" "--method layers --count 2"
table gutenberg-dev-llama-5m "$SHARED/models/gutenberg-dev-llama-5m" "$SHARED/data/gutenberg-dev-calib.txt" \
  "$SHARED/data/gutenberg-dev-eval.txt" "" \
  "--method heads --ratio 0.5" "--method channels --ratio 0.282" "--method channels --ratio 0.4225" \
  "--method layers --count 1" "--method layers --count 2"
