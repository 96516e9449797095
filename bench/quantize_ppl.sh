#!/usr/bin/env bash
# Perplexity of dense, RTN and GPTQ integer quantization (asymmetric, group 32) at 4 and 3 bits on the
# two shared trained models (GPTQ convention, -c 256, whole eval file). Prints a Markdown table.
#
#   bench/quantize_ppl.sh [BUILD_DIR]
#
# Environment: SHARED (default ../shared), THREADS (default 1), NSAMPLES (32), SEQLEN (256),
# WORK (scratch folder, default /tmp/llmpress-bench-quant).
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${1:-build}
SHARED=${SHARED:-../shared}
THREADS=${THREADS:-1}
NSAMPLES=${NSAMPLES:-32}
SEQLEN=${SEQLEN:-256}
WORK=${WORK:-/tmp/llmpress-bench-quant}
mkdir -p "$WORK"
L="$BUILD/llmpress"

ppl() {  # model text -> perplexity
  "$L" perplexity -m "$1" -f "$2" -c 256 --json --no-progress -t "$THREADS" 2>/dev/null |
    python3 -c "import json,sys; print('%.4f' % json.load(sys.stdin)['perplexity'])"
}
row() {  # label model calib eval
  local cells="| $1 | $(ppl "$2" "$4")"
  for bits in 4 3; do
    for method in rtn gptq; do
      rm -rf "$WORK/q"
      "$L" quantize -m "$2" -o "$WORK/q" --method "$method" --bits "$bits" --group 32 --calib "$3" \
        --nsamples "$NSAMPLES" --seqlen "$SEQLEN" -t "$THREADS" > /dev/null 2>&1
      cells+=" | $(ppl "$WORK/q" "$4")"
    done
  done
  echo "$cells |"
}

echo "| model | dense | RTN 4-bit | GPTQ 4-bit | RTN 3-bit | GPTQ 3-bit |"
echo "|---|---|---|---|---|---|"
row stories260K "$SHARED/models/stories260K/stories260K.bin" "$SHARED/data/tinystories-calib.txt" "$SHARED/data/tinystories-eval.txt"
row gutenberg-dev-llama-5m "$SHARED/models/gutenberg-dev-llama-5m" "$SHARED/data/gutenberg-dev-calib.txt" "$SHARED/data/gutenberg-dev-eval.txt"
