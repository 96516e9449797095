#!/usr/bin/env bash
# Quantization-aware fine-tuning on a domain shift: gutenberg-dev-llama-5m-long (trained on Gutenberg prose)
# quantized to Q4_K_M and Q4_1 GGUFs (RTN), then fine-tuned on the first 90% of tinyshakespeare and scored by
# llama-perplexity on the last 10% (held out): the untuned quantized model, PEQA (scales only), LoRA on the
# frozen quantized base (the adapter applied with llama-perplexity --lora, and merged + re-quantized), and
# QA-LoRA merged into the Q4_1 block mins. Same steps, batch and rows for every method; prints Markdown
# tables with each job's time and peak memory.
#
#   LLAMA_BIN=/path/to/llama.cpp/build/bin bench/finetune.sh [LLMPRESS_BINARY]
#
# Environment: SHARED (../shared), THREADS (2), STEPS (150), SEQLEN (128), WORK (/tmp/llmpress-bench-finetune).
set -euo pipefail
cd "$(dirname "$0")/.."
L=${1:-build/llmpress}
SHARED=${SHARED:-../shared}
THREADS=${THREADS:-2}
STEPS=${STEPS:-150}
SEQLEN=${SEQLEN:-128}
WORK=${WORK:-/tmp/llmpress-bench-finetune}
: "${LLAMA_BIN:?set LLAMA_BIN to the bin folder of a llama.cpp build (llama-perplexity)}"
M="$SHARED/models/gutenberg-dev-llama-5m-long"
mkdir -p "$WORK"
# The split: the first 90% of the lines to train on, the rest held out.
python3 - "$SHARED/data/tinyshakespeare.txt" "$WORK" <<'EOF'
import sys
lines = open(sys.argv[1], encoding="utf-8").read().splitlines(keepends=True)
cut = len(lines) * 9 // 10
open(sys.argv[2] + "/train.txt", "w", encoding="utf-8").write("".join(lines[:cut]))
open(sys.argv[2] + "/heldout.txt", "w", encoding="utf-8").write("".join(lines[cut:]))
EOF
TRAIN="$WORK/train.txt"
HELDOUT="$WORK/heldout.txt"
ppl() {  # model [adapter]
  "$LLAMA_BIN/llama-perplexity" -m "$1" ${2:+--lora "$2"} -f "$HELDOUT" -c 256 -b 256 -t "$THREADS" 2>&1 |
    sed -n 's/.*Final estimate: PPL = \([0-9.]*\).*/\1/p'
}
size() { du -sb "$1" | python3 -c "import sys; print('%.2f' % (int(sys.stdin.read().split()[0]) / 1048576))"; }
tune() {  # name out base args... -> table row (an adapter output is scored on top of its base)
  local name=$1 out=$2 base=$3; shift 3
  /usr/bin/time -f "%e %M" -o "$WORK/time" "$L" finetune -m "$base" -f "$TRAIN" --steps "$STEPS" --batch-size 8 \
    --train-seqlen "$SEQLEN" "$@" -o "$out" --no-progress -t "$THREADS" > "$WORK/$name.log" 2>&1
  read -r secs kb < "$WORK/time"
  local score
  if grep -q -- "--merge" <<< "$*" || [[ "$*" == *peqa* ]]; then score=$(ppl "$out"); else score=$(ppl "$base" "$out"); fi
  echo "| $name | $score | $(size "$out") | ${secs%.*} s | $((kb / 1024)) MiB |"
}
"$L" convert -m "$M" -o "$WORK/dense.gguf" > /dev/null 2>&1
echo "dense (F32), untuned: $(ppl "$WORK/dense.gguf")"
for type in Q4_K_M Q4_1; do
  base="$WORK/$type.gguf"
  "$L" quantize -m "$M" -o "$base" --type "$type" --method rtn --no-progress > /dev/null 2>&1
  echo
  echo "| $type | held-out perplexity | MiB (output) | time | peak memory |"
  echo "|---|---|---|---|---|"
  echo "| untuned | $(ppl "$base") | $(size "$base") | | |"
  tune peqa "$WORK/$type-peqa.gguf" "$base" --method peqa --lr 1e-3
  tune "lora r16 (adapter, --lora)" "$WORK/$type-lora.gguf" "$base" --method lora --rank 16 --alpha 32 --lr 1e-3
  tune "lora r16, merged" "$WORK/$type-lora-merged.gguf" "$base" --method lora --rank 16 --alpha 32 --lr 1e-3 --merge
  if [ "$type" = Q4_1 ]; then
    tune "qa-lora r16, merged" "$WORK/$type-qalora.gguf" "$base" --method qa-lora --rank 16 --alpha 32 --lr 1e-3 --merge
  fi
done
