#!/usr/bin/env bash
# AWQ with and without its weight-clipping search against RTN, at int4 and int3 (group 128), on
# gutenberg-dev-llama-5m-long (dense fake-quantized output folders); llmpress perplexity on the whole
# eval file, windows of 256. Prints a Markdown table.
#
#   bench/awq_clip.sh [BUILD_DIR]
#
# Environment: SHARED (default ../shared), THREADS (1), NSAMPLES (64), SEQLEN (256),
# WORK (default /tmp/llmpress-bench-awq-clip).
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${1:-build}
SHARED=${SHARED:-../shared}
THREADS=${THREADS:-1}
NSAMPLES=${NSAMPLES:-64}
SEQLEN=${SEQLEN:-256}
WORK=${WORK:-/tmp/llmpress-bench-awq-clip}
L="$BUILD/llmpress"
MODEL="$SHARED/models/gutenberg-dev-llama-5m-long"
CALIB="$SHARED/data/gutenberg-dev-calib.txt"
EVAL="$SHARED/data/gutenberg-dev-eval.txt"
mkdir -p "$WORK"

ppl() {
  "$L" perplexity -m "$1" -f "$EVAL" -c 256 --json --no-progress -t "$THREADS" 2>/dev/null |
    python3 -c "import json,sys; print('%.4f' % json.load(sys.stdin)['perplexity'])"
}
row() {  # label, quantize arguments...
  local label=$1
  shift
  local start end
  start=$(date +%s.%N)
  "$L" quantize -m "$MODEL" -o "$WORK/q" "$@" -t "$THREADS" --no-progress > /dev/null 2>&1
  end=$(date +%s.%N)
  local p
  p=$(ppl "$WORK/q")
  echo "| $label | $p | $(python3 -c "import sys; print('%+.4f' % (float(sys.argv[1]) - float(sys.argv[2])))" "$p" "$dense") | $(python3 -c "import sys; print('%.1f s' % (float(sys.argv[2]) - float(sys.argv[1])))" "$start" "$end") |"
}

dense=$(ppl "$MODEL")
echo "| model | perplexity | increase | quantize time |"
echo "|---|---|---|---|"
echo "| dense F32 | $dense | | |"
calib=(--calib "$CALIB" --nsamples "$NSAMPLES" --seqlen "$SEQLEN")
for bits in 4 3; do
  row "rtn int$bits g128" --method rtn --bits "$bits" --group 128
  row "awq int$bits g128, scales only (--clip=false)" --method awq --bits "$bits" --group 128 "${calib[@]}" --clip=false
  row "awq int$bits g128, scales + clipping" --method awq --bits "$bits" --group 128 "${calib[@]}"
done
