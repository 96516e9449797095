#!/usr/bin/env bash
# Where the Q2_K mix loses: each kind of tensor quantized alone at the type the Q2_K mix gives it (every
# other tensor kept F16 through --tensor-type overrides), by imatrix-weighted RTN and by format-aware
# GPTQ, on gutenberg-dev-llama-5m. Prints a Markdown table of llama-perplexity increases over the F16
# model (whole eval file, windows of 256), the GPTQ / RTN ratio of each, and the sum of the parts
# against the whole mix.
#
#   LLAMA_BIN=/path/to/llama.cpp/build/bin bench/q2k_breakdown.sh [BUILD_DIR]
#
# Environment: SHARED (default ../shared), THREADS (2), NSAMPLES (64), SEQLEN (512), CHUNKS (1000: all),
# MIX (Q2_K), WORK (default /tmp/llmpress-bench-q2k).
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${1:-build}
SHARED=${SHARED:-../shared}
THREADS=${THREADS:-2}
NSAMPLES=${NSAMPLES:-64}
SEQLEN=${SEQLEN:-512}
CHUNKS=${CHUNKS:-1000}
MIX=${MIX:-Q2_K}
WORK=${WORK:-/tmp/llmpress-bench-q2k}
: "${LLAMA_BIN:?set LLAMA_BIN to the bin folder of a llama.cpp build (llama-perplexity)}"
L="$BUILD/llmpress"
MODEL="$SHARED/models/gutenberg-dev-llama-5m"
CALIB="$SHARED/data/gutenberg-dev-calib.txt"
EVAL="$SHARED/data/gutenberg-dev-eval.txt"
mkdir -p "$WORK"
KINDS="attn_q attn_k attn_v attn_output ffn_gate ffn_up ffn_down output token_embd"

ppl() {
  "$LLAMA_BIN/llama-perplexity" -m "$1" -f "$EVAL" -c 256 -b 256 --chunks "$CHUNKS" -t "$THREADS" 2>&1 |
    sed -n 's/.*Final estimate: PPL = \([0-9.]*\).*/\1/p'
}
quantize() {  # method output [overrides...]
  local method=$1 out=$2
  shift 2
  local args=()
  for o in "$@"; do args+=(--tensor-type "$o"); done
  "$L" quantize -m "$MODEL" -o "$out" --type "$MIX" --method "$method" --calib "$CALIB" --nsamples "$NSAMPLES" \
    --seqlen "$SEQLEN" -t "$THREADS" --no-progress "${args[@]}" > /dev/null 2>&1
}
inc() { python3 -c "import sys; print('%+.4f' % (float(sys.argv[1]) - float(sys.argv[2])))" "$1" "$2"; }
ratio() { python3 -c "import sys; a, b = float(sys.argv[1]), float(sys.argv[2]); print('%.2f' % (a / b) if b > 0 else '-')" "$1" "$2"; }

"$L" convert -m "$MODEL" -o "$WORK/f16.gguf" --type F16 > /dev/null 2>&1
dense=$(ppl "$WORK/f16.gguf")
echo "F16: llama-perplexity $dense"
echo
echo "| tensors quantized ($MIX mix types) | imatrix RTN | GPTQ | GPTQ / RTN |"
echo "|---|---|---|---|"
sum_r=0 sum_g=0
for kind in $KINDS; do
  others=()
  for k in $KINDS; do [ "$k" = "$kind" ] || others+=("^(blk\\.[0-9]+\\.)?$k\\.weight\$=F16"); done
  quantize rtn "$WORK/rtn.gguf" "${others[@]}"
  quantize gptq "$WORK/gptq.gguf" "${others[@]}"
  r=$(inc "$(ppl "$WORK/rtn.gguf")" "$dense") g=$(inc "$(ppl "$WORK/gptq.gguf")" "$dense")
  sum_r=$(python3 -c "print($sum_r + $r)") sum_g=$(python3 -c "print($sum_g + $g)")
  echo "| $kind | $r | $g | $(ratio "$g" "$r") |"
done
quantize rtn "$WORK/rtn.gguf"
quantize gptq "$WORK/gptq.gguf"
r=$(inc "$(ppl "$WORK/rtn.gguf")" "$dense") g=$(inc "$(ppl "$WORK/gptq.gguf")" "$dense")
echo "| sum of the rows | $(printf '%+.4f' "$sum_r") | $(printf '%+.4f' "$sum_g") | $(ratio "$sum_g" "$sum_r") |"
echo "| the whole mix | $r | $g | $(ratio "$g" "$r") |"
echo
echo "Perplexity increase over F16 ($dense), llama-perplexity over $CHUNKS windows of 256 tokens."
