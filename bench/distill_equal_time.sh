#!/usr/bin/env bash
# KD against plain fine-tuning at equal wall time: KD pays a teacher forward per step, so in the
# time of STEPS KD steps CE-only can take more. One run measures the KD job's wall time and the CE
# job's time per step, then gives CE the steps that fill the KD job's time (same batch, lr and
# schedule shape; the cosine runs to 0 over each job's own steps). Student: ShortGPT 6 -> 4 layers of
# gutenberg-dev-llama-5m-long, as in bench/distill_recovery.sh (whose WORK folder it shares).
#
#   bench/distill_equal_time.sh [BUILD_DIR]
#
# Environment: SHARED (../shared), THREADS (1), STEPS (100), KD ("--loss fkl"), BATCH (8), SEQLEN (256),
# LR (1e-3), FLAGS (added to every job, e.g. --bf16), WORK (/tmp/llmpress-bench-distill).
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${1:-build}
SHARED=${SHARED:-../shared}
THREADS=${THREADS:-1}
STEPS=${STEPS:-100}
KD=${KD:---loss fkl}
BATCH=${BATCH:-8}
SEQLEN=${SEQLEN:-256}
LR=${LR:-1e-3}
FLAGS=${FLAGS:-}
WORK=${WORK:-/tmp/llmpress-bench-distill}
TEACHER="$SHARED/models/gutenberg-dev-llama-5m-long"
TRAIN="$SHARED/data/gutenberg-dev-train.txt"
EVAL="$SHARED/data/gutenberg-dev-eval.txt"
STUDENT="$WORK/student-layers"
mkdir -p "$WORK"

ppl() { "$BUILD/llmpress" perplexity -m "$1" -f "$EVAL" -c 256 -t "$THREADS" --json --no-progress 2>/dev/null | \
  /usr/bin/python3 -c "import json,sys; print('%.4f' % json.loads(sys.stdin.read())['perplexity'])"; }

[ -d "$STUDENT" ] || "$BUILD/llmpress" prune -m "$TEACHER" -o "$STUDENT" --method layers --count 2 \
  --calib "$SHARED/data/gutenberg-dev-calib.txt" --nsamples 128 --seqlen 256 --no-progress > "$STUDENT.log" 2>&1

# Runs one job; prints its wall seconds.
job() {
  local out=$1 steps=$2; shift 2
  local start=$(date +%s.%N)
  "$BUILD/llmpress" distill -m "$STUDENT" --teacher "$TEACHER" -f "$TRAIN" -o "$out" "$@" --steps "$steps" \
    -b "$BATCH" --seqlen "$SEQLEN" --lr "$LR" --warmup 10 -t "$THREADS" --no-progress $FLAGS > "$out.log" 2>&1 \
    || { tail -3 "$out.log" >&2; exit 1; }
  echo "$(date +%s.%N) - $start" | bc -l
}

teacher=$(ppl "$TEACHER")
before=$(ppl "$STUDENT")
kd_wall=$(job "$WORK/eq-kd" "$STEPS" $KD)
ce_wall=$(job "$WORK/eq-ce" "$STEPS" --loss ce)
ce_steps=$(echo "$STEPS * $kd_wall / $ce_wall" | bc)
ce_long_wall=$(job "$WORK/eq-ce-long" "$ce_steps" --loss ce)
echo "teacher $teacher, student $before; KD = '$KD'; $BATCH x $SEQLEN tokens per step, lr $LR, ${FLAGS:+$FLAGS, }$THREADS threads, $(date -u +%F)"
printf "| run | steps | wall s | after | recovered |\n|---|---|---|---|---|\n"
for row in "kd $STEPS $kd_wall eq-kd" "ce $STEPS $ce_wall eq-ce" "ce-equal-time $ce_steps $ce_long_wall eq-ce-long"; do
  set -- $row
  after=$(ppl "$WORK/$4")
  printf "| %s | %s | %.0f | %s | %.1f%% |\n" "$1" "$2" "$3" "$after" \
    "$(echo "100 * ($before - $after) / ($before - $teacher)" | bc -l)"
done
