#!/usr/bin/env bash
# Perplexity of integer-grid quantization (dense fake-quantized output) on the two shared trained
# models: RTN, AWQ, GPTQ and AWQ+GPTQ at 4/3/2 bits, asymmetric, group 32 and per output channel
# (GPTQ convention, -c 256, whole eval file). Prints a Markdown table.
#
#   bench/quantize_ppl.sh [BUILD_DIR]
#
# Environment: SHARED (default ../shared), THREADS (default 2), NSAMPLES (32), SEQLEN (256),
# GRIDS ("4:32 3:32 2:32 4:-1 3:-1", bits:group), WORK (default /tmp/llmpress-bench-quant).
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${1:-build}
SHARED=${SHARED:-../shared}
THREADS=${THREADS:-2}
NSAMPLES=${NSAMPLES:-32}
SEQLEN=${SEQLEN:-256}
GRIDS=${GRIDS:-"4:32 3:32 2:32 4:-1 3:-1"}
WORK=${WORK:-/tmp/llmpress-bench-quant}
mkdir -p "$WORK"
L="$BUILD/llmpress"

ppl() {  # model text -> perplexity
  "$L" perplexity -m "$1" -f "$2" -c 256 --json --no-progress -t "$THREADS" 2>/dev/null |
    python3 -c "import json,sys; print('%.4f' % json.load(sys.stdin)['perplexity'])"
}
rows() {  # label model calib eval
  local dense
  dense=$(ppl "$2" "$4")
  for grid in $GRIDS; do
    local bits=${grid%%:*} group=${grid##*:}
    local cells="| $1 | int$bits $([ "$group" = -1 ] && echo per-channel || echo "g$group") | $dense"
    for method in rtn awq gptq awq-gptq; do
      rm -rf "$WORK/q"
      "$L" quantize -m "$2" -o "$WORK/q" --method "$method" --bits "$bits" --group "$group" --calib "$3" \
        --nsamples "$NSAMPLES" --seqlen "$SEQLEN" -t "$THREADS" --no-progress > /dev/null 2>&1
      cells+=" | $(ppl "$WORK/q" "$4")"
    done
    echo "$cells |"
  done
}

echo "| model | grid | dense | RTN | AWQ | GPTQ | AWQ + GPTQ |"
echo "|---|---|---|---|---|---|---|"
rows stories260K "$SHARED/models/stories260K/stories260K.bin" "$SHARED/data/tinystories-calib.txt" "$SHARED/data/tinystories-eval.txt"
rows gutenberg-dev-llama-5m "$SHARED/models/gutenberg-dev-llama-5m" "$SHARED/data/gutenberg-dev-calib.txt" "$SHARED/data/gutenberg-dev-eval.txt"
