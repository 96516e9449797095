#!/usr/bin/env bash
# W4A8KV4 as LLM-QAT studies it, on gutenberg-dev-llama-5m-long: int4 g128 weights (GPTQ checkpoints), every
# decoder linear's input rounded to 8 bits per token and the KV cache to 4 bits per token and head, simulated
# by `llmpress perplexity --act-bits 8 --kv-bits 4` (llama.cpp convention, -c 256, CHUNKS windows). Rows: the
# dense model, RTN, SmoothQuant (alpha 0.5) then RTN, GPTQ, and data-free LLM-QAT from GPTQ trained with the
# same activation and KV fake-quant. Prints a Markdown table with each job's time and peak memory.
#
#   bench/w4a8kv4.sh [LLMPRESS_BINARY]
#
# Environment: SHARED (../shared), THREADS (2), CHUNKS (40), STEPS (200), WORK (/tmp/llmpress-bench-w4a8kv4).
set -euo pipefail
cd "$(dirname "$0")/.."
L=${1:-build/llmpress}
SHARED=${SHARED:-../shared}
THREADS=${THREADS:-2}
CHUNKS=${CHUNKS:-40}
STEPS=${STEPS:-200}
WORK=${WORK:-/tmp/llmpress-bench-w4a8kv4}
M="$SHARED/models/gutenberg-dev-llama-5m-long"
EVAL="$SHARED/data/gutenberg-dev-eval.txt"
calib=(--calib "$SHARED/data/gutenberg-dev-calib.txt" --nsamples 128 --seqlen 256)
mkdir -p "$WORK"
ppl() {  # model act_bits kv_bits
  "$L" perplexity -m "$1" -f "$EVAL" -c 256 --chunks "$CHUNKS" --llamacpp --act-bits "$2" --kv-bits "$3" --json \
    --no-progress -t "$THREADS" 2>/dev/null | python3 -c "import json,sys; print('%.4f' % json.load(sys.stdin)['perplexity'])"
}
job() {  # name out args... (runs llmpress args -o out, timed)
  local name=$1 out=$2; shift 2
  /usr/bin/time -f "%e %M" -o "$WORK/time" "$L" "$@" -o "$out" --no-progress -t "$THREADS" > "$WORK/$name.log" 2>&1
  read -r secs kb < "$WORK/time"
  echo "${secs%.*} s | $((kb / 1024)) MiB"
}
row() { echo "| $1 | $(ppl "$2" 0 0) | $(ppl "$2" 8 0) | $(ppl "$2" 8 4) | $3 |"; }
int4=(--format gptq --bits 4 --group 128)
echo "| model | W-A16-KV16 | W-A8-KV16 | W-A8-KV4 | time | peak memory |"
echo "|---|---|---|---|---|---|"
row "dense" "$M" " | "
t=$(job rtn "$WORK/rtn" quantize -m "$M" "${int4[@]}" --method rtn); row "int4 g128 RTN" "$WORK/rtn" "$t"
t1=$(job smooth "$WORK/smooth" quantize -m "$M" --method smoothquant "${calib[@]}")
t=$(job smooth-rtn "$WORK/smooth-rtn" quantize -m "$WORK/smooth" "${int4[@]}" --method rtn)
row "SmoothQuant + RTN" "$WORK/smooth-rtn" "$t (smoothing: ${t1%% |*})"
t=$(job gptq "$WORK/gptq" quantize -m "$M" "${int4[@]}" --method gptq "${calib[@]}"); row "int4 g128 GPTQ" "$WORK/gptq" "$t"
t=$(job llmqat "$WORK/llmqat" qat -m "$M" "${int4[@]}" --method llm-qat "${calib[@]}" --generate 512 --train-seqlen 256 \
      --steps "$STEPS" --learn weights --lr 3e-4 --act-bits 8 --kv-bits 4 --bf16)
row "LLM-QAT (A8 KV4 in training, data-free)" "$WORK/llmqat" "$t"
