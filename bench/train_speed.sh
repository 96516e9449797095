#!/usr/bin/env bash
# Training speed and peak memory: `llmpress train` against a PyTorch eager script of the same model
# (bench/torch_train_speed.py: the Hugging Face Llama forward in plain torch, torch.optim.AdamW), same
# batch, sequence length, thread count, optimizer and clipping, run one after the other in one go.
# Both count every step (no warm-up excluded) and both report tokens/s over the whole run; peak RSS
# is /usr/bin/time's. The token values differ (ours: our tokenizer; theirs: spm_encode), the shapes
# and the work do not.
#
#   bench/train_speed.sh [BUILD_DIR]
#
# Environment: SHARED (../shared), THREADS (2), BATCH (8), SEQLEN (256), STEPS (10), CHECKPOINT (0|1:
# --gradient-checkpointing for ours), BF16 (0|1: --bf16 for ours, torch.autocast bfloat16 for PyTorch), WORK (/tmp/llmpress-bench-train).
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${1:-build}
SHARED=${SHARED:-../shared}
THREADS=${THREADS:-2}
BATCH=${BATCH:-8}
SEQLEN=${SEQLEN:-256}
STEPS=${STEPS:-10}
WORK=${WORK:-/tmp/llmpress-bench-train}
MODEL="$SHARED/models/gutenberg-dev-llama-5m"
TEXT="$SHARED/data/gutenberg-dev-train.txt"
mkdir -p "$WORK"
EXTRA=""
TORCH_EXTRA=""
[ "${CHECKPOINT:-0}" = 1 ] && EXTRA="--gradient-checkpointing"
[ "${BF16:-0}" = 1 ] && EXTRA="${EXTRA:+$EXTRA }--bf16" && TORCH_EXTRA="--bf16"

echo "model: gutenberg-dev-llama-5m, ${EXTRA:+$EXTRA, }$STEPS steps of $BATCH x $SEQLEN tokens, $THREADS threads, $(date -u +%F)"
/usr/bin/time -v "$BUILD/llmpress" train -m "$MODEL" -f "$TEXT" -o "$WORK/ours" --steps "$STEPS" -b "$BATCH" \
  --seqlen "$SEQLEN" --lr 1e-3 --weight-decay 0.1 --clip 1.0 -t "$THREADS" --no-progress $EXTRA \
  > "$WORK/ours.out" 2> "$WORK/ours.err" || { tail -5 "$WORK/ours.err"; exit 1; }
ours_tps=$(grep -o '([0-9]* tokens/s)' "$WORK/ours.out" | tr -dc '0-9')
ours_rss=$(grep "Maximum resident" "$WORK/ours.err" | awk '{print $6}')
/usr/bin/time -v /usr/bin/python3 bench/torch_train_speed.py --model "$MODEL" --text "$TEXT" --batch-size "$BATCH" \
  --seqlen "$SEQLEN" --steps "$STEPS" --warmup-steps 0 --threads "$THREADS" --lr 1e-3 $TORCH_EXTRA \
  > "$WORK/torch.out" 2> "$WORK/torch.err" || { tail -5 "$WORK/torch.err"; exit 1; }
torch_tps=$(/usr/bin/python3 -c "import json,sys; print(round(json.loads(open('$WORK/torch.out').read().strip().splitlines()[-1])['tokens_per_s']))")
torch_rss=$(grep "Maximum resident" "$WORK/torch.err" | awk '{print $6}')
printf "%-22s %12s %14s\n" "" "tokens/s" "peak RSS MiB"
printf "%-22s %12s %14.0f\n" "llmpress train" "$ours_tps" "$(echo "$ours_rss / 1024" | bc -l)"
printf "%-22s %12s %14.0f\n" "PyTorch eager" "$torch_tps" "$(echo "$torch_rss / 1024" | bc -l)"
printf "speed ratio (ours / PyTorch): %.2f   memory ratio: %.2f\n" "$(echo "$ours_tps / $torch_tps" | bc -l)" \
  "$(echo "$ours_rss / $torch_rss" | bc -l)"
