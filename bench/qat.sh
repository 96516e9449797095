#!/usr/bin/env bash
# Quantization-aware training against post-training quantization on gutenberg-dev-llama-5m-long (the
# trained-longer model: training on its own text barely helps the dense model, so gains are QAT's).
# Q2_K GGUF (llama-perplexity, -c 256, CHUNKS windows) and int2 g64 GPTQ checkpoints (llmpress
# perplexity, llama.cpp convention): RTN, GPTQ (format-aware for GGUF), Block-AP (EfficientQAT's
# per-layer training from RTN), Block-AP + E2E-QP (scales and mins by KD, codes fixed), LLM-QAT (every
# quantized weight by KD from GPTQ). Prints a Markdown table with each job's time and peak memory.
#
#   LLAMA_BIN=/path/to/llama.cpp/build/bin bench/qat.sh [LLMPRESS_BINARY]
#
# Environment: SHARED (../shared), THREADS (2), CHUNKS (40), STEPS (200), WORK (/tmp/llmpress-bench-qat),
# TARGETS ("Q2_K int2g64"; also Q3_K_M and int3g128).
set -euo pipefail
cd "$(dirname "$0")/.."
L=${1:-build/llmpress}
SHARED=${SHARED:-../shared}
THREADS=${THREADS:-2}
CHUNKS=${CHUNKS:-40}
STEPS=${STEPS:-200}
WORK=${WORK:-/tmp/llmpress-bench-qat}
: "${LLAMA_BIN:?set LLAMA_BIN to the bin folder of a llama.cpp build (llama-perplexity)}"
M="$SHARED/models/gutenberg-dev-llama-5m-long"
CALIB="$SHARED/data/gutenberg-dev-calib.txt"
TRAIN="$SHARED/data/gutenberg-dev-train.txt"
EVAL="$SHARED/data/gutenberg-dev-eval.txt"
mkdir -p "$WORK"
ppl() {
  if [[ "$1" == *.gguf ]]; then
    "$LLAMA_BIN/llama-perplexity" -m "$1" -f "$EVAL" -c 256 -b 256 --chunks "$CHUNKS" -t "$THREADS" 2>&1 |
      sed -n 's/.*Final estimate: PPL = \([0-9.]*\).*/\1/p'
  else
    "$L" perplexity -m "$1" -f "$EVAL" -c 256 --chunks "$CHUNKS" --llamacpp --json --no-progress -t "$THREADS" 2>/dev/null |
      python3 -c "import json,sys; print('%.4f' % json.load(sys.stdin)['perplexity'])"
  fi
}
size() { du -sb "$1" | python3 -c "import sys; print('%.2f' % (int(sys.stdin.read().split()[0]) / 1048576))"; }
run() {  # name out args... -> table row
  local name=$1 out=$2; shift 2
  /usr/bin/time -f "%e %M" -o "$WORK/time" "$L" "$@" -o "$out" --no-progress -t "$THREADS" > "$WORK/$name.log" 2>&1
  read -r secs kb < "$WORK/time"
  echo "| $name | $(ppl "$out") | $(size "$out") | ${secs%.*} s | $((kb / 1024)) MiB |"
}
calib=(--calib "$CALIB" --nsamples 128 --seqlen 256)
block=(--block-batch 4 --block-weight-lr 3e-4 --block-quant-lr 1e-3)
train=(-f "$TRAIN" --steps "$STEPS" --bf16)
echo "dense: llmpress perplexity $(ppl "$M")"
for target in ${TARGETS:-Q2_K int2g64}; do
  case "$target" in
    Q2_K|Q3_K_M) fmt=(--type "$target"); ext=.gguf ;;
    int2g64) fmt=(--format gptq --bits 2 --group 64); ext="" ;;
    int3g128) fmt=(--format gptq --bits 3 --group 128); ext="" ;;
    *) echo "unknown target $target (Q2_K, Q3_K_M, int2g64, int3g128)" >&2; exit 1 ;;
  esac
  echo
  echo "| $target | perplexity | MiB | time | peak memory |"
  echo "|---|---|---|---|---|"
  run rtn "$WORK/rtn$ext" quantize -m "$M" "${fmt[@]}" --method rtn
  run gptq "$WORK/gptq$ext" quantize -m "$M" "${fmt[@]}" --method gptq "${calib[@]}"
  run block-ap "$WORK/bap$ext" quantize -m "$M" "${fmt[@]}" --method block-ap "${calib[@]}" --batch-size 4 --weight-lr 3e-4 --quant-lr 1e-3
  run "block-ap + e2e-qp" "$WORK/eqat$ext" qat -m "$M" "${fmt[@]}" --method efficientqat "${calib[@]}" "${block[@]}" "${train[@]}" --lr 1e-3
  run "llm-qat (gptq init)" "$WORK/llmqat$ext" qat -m "$M" "${fmt[@]}" --method llm-qat "${calib[@]}" "${train[@]}" --learn weights --lr 3e-4
done
