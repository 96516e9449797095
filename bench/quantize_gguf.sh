#!/usr/bin/env bash
# GGUF quantization quality against llama.cpp on gutenberg-dev-llama-5m: for each llama-quantize mix,
# the perplexity (llama-perplexity, -c 256, whole eval file) and file size of
#   llama-quantize (no imatrix), llama-quantize --imatrix (llama-imatrix on the calibration text),
#   llmpress rtn --calib (imatrix-weighted), llmpress gptq (format-aware),
# plus, for the llmpress GPTQ file, llmpress's own perplexity (--llamacpp convention) for comparison.
# Prints a Markdown table.
#
#   LLAMA_BIN=/path/to/llama.cpp/build/bin bench/quantize_gguf.sh [BUILD_DIR]
#
# Environment: SHARED (default ../shared), THREADS (2), NSAMPLES (64), SEQLEN (512),
# CHUNKS (evaluation windows of 256 tokens, default 100), MIXES ("Q4_0 Q4_K_M Q3_K_M Q2_K"; the i-quant
# mixes too, e.g. "IQ4_XS IQ3_M IQ3_XXS IQ2_M IQ2_XS": llama-quantize refuses IQ2_XXS/IQ2_XS/IQ1_S without
# an imatrix, and its cell says so),
# WORK (default /tmp/llmpress-bench-gguf; the imatrix is kept there and reused).
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${1:-build}
SHARED=${SHARED:-../shared}
THREADS=${THREADS:-2}
NSAMPLES=${NSAMPLES:-64}
CHUNKS=${CHUNKS:-100}
SEQLEN=${SEQLEN:-512}
MIXES=${MIXES:-"Q4_0 Q4_K_M Q3_K_M Q2_K"}
WORK=${WORK:-/tmp/llmpress-bench-gguf}
: "${LLAMA_BIN:?set LLAMA_BIN to the bin folder of a llama.cpp build (llama-quantize, llama-imatrix, llama-perplexity)}"
L="$BUILD/llmpress"
MODEL="$SHARED/models/gutenberg-dev-llama-5m"
CALIB="$SHARED/data/gutenberg-dev-calib.txt"
EVAL="$SHARED/data/gutenberg-dev-eval.txt"
mkdir -p "$WORK"

llama_ppl() {  # gguf -> "ppl"
  "$LLAMA_BIN/llama-perplexity" -m "$1" -f "$EVAL" -c 256 -b 256 --chunks "$CHUNKS" -t "$THREADS" 2>&1 |
    sed -n 's/.*Final estimate: PPL = \([0-9.]*\).*/\1/p'
}
our_ppl() {
  "$L" perplexity -m "$1" -f "$EVAL" -c 256 --chunks "$CHUNKS" --llamacpp --json --no-progress -t "$THREADS" 2>/dev/null |
    python3 -c "import json,sys; print('%.4f' % json.load(sys.stdin)['perplexity'])"
}
mib() { python3 -c "import os,sys; print('%.2f' % (os.path.getsize(sys.argv[1]) / 1048576))" "$1"; }
cell() { [ -f "$1" ] && echo "$(llama_ppl "$1") ($(mib "$1"))" || echo "refused (needs an imatrix)"; }

"$L" convert -m "$MODEL" -o "$WORK/f32.gguf" --type F32 > /dev/null 2>&1
[ -f "$WORK/imatrix.dat" ] || "$LLAMA_BIN/llama-imatrix" -m "$WORK/f32.gguf" -f "$CALIB" -o "$WORK/imatrix.dat" -c "$SEQLEN" -t "$THREADS" \
  > "$WORK/imatrix.log" 2>&1
dense=$(llama_ppl "$WORK/f32.gguf")
echo "dense F32: llama-perplexity $dense, llmpress $(our_ppl "$WORK/f32.gguf")"
echo
echo "| mix | llama-quantize | llama-quantize --imatrix | llmpress rtn + calib | llmpress gptq | gptq (llmpress ppl) | gptq time |"
echo "|---|---|---|---|---|---|---|"
for mix in $MIXES; do
  rm -f "$WORK/lq.gguf"
  "$LLAMA_BIN/llama-quantize" "$WORK/f32.gguf" "$WORK/lq.gguf" "$mix" "$THREADS" > /dev/null 2>&1 || rm -f "$WORK/lq.gguf"
  "$LLAMA_BIN/llama-quantize" --imatrix "$WORK/imatrix.dat" "$WORK/f32.gguf" "$WORK/lqi.gguf" "$mix" "$THREADS" > /dev/null 2>&1
  common=(-m "$MODEL" --format gguf --type "$mix" --nsamples "$NSAMPLES" --seqlen "$SEQLEN" -t "$THREADS" --no-progress)
  "$L" quantize "${common[@]}" -o "$WORK/rtni.gguf" --method rtn --calib "$CALIB" > /dev/null 2>&1
  start=$(date +%s.%N)
  "$L" quantize "${common[@]}" -o "$WORK/gptq.gguf" --method gptq --calib "$CALIB" > /dev/null 2>&1
  secs=$(python3 -c "import sys; print('%.0f s' % (float(sys.argv[2]) - float(sys.argv[1])))" "$start" "$(date +%s.%N)")
  echo "| $mix | $(cell "$WORK/lq.gguf") | $(cell "$WORK/lqi.gguf") | $(cell "$WORK/rtni.gguf") | $(cell "$WORK/gptq.gguf") | $(our_ppl "$WORK/gptq.gguf") | $secs |"
done
echo
echo "Cells: llama-perplexity PPL over $CHUNKS windows of 256 tokens (file MiB). Dense F32 PPL: $dense."
