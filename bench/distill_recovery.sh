#!/usr/bin/env bash
# Recovery of compressed students by distillation from the model they were made from
# (gutenberg-dev-llama-5m-long, dev-eval perplexity 12.87): students made by ShortGPT layer removal
# (6 -> 4 layers), SparseGPT 2:4, SVD-LLM (60% of the attention parameters kept, factors trained) and
# 50% of the attention heads removed; each trained with the same token budget of gutenberg-dev-train.txt
# (STEPS x BATCH x SEQLEN) by plain cross-entropy and by each KD loss; perplexity on the whole
# gutenberg-dev-eval.txt (657 windows of 256, every predicted token scored). Recovered = the share of
# the perplexity the compression lost that training won back: (student - after) / (student - teacher).
#
#   bench/distill_recovery.sh [BUILD_DIR]
#
# fkl-cacheK: forward KL from a top-K teacher cache (built in the run, its size printed) instead of the online teacher.
# Environment: SHARED (../shared), THREADS (2), STEPS (300), BATCH (8), SEQLEN (256), LR (1e-3),
# STUDENTS ("layers sparse24 svdllm heads"), LOSSES (names below, default all), FLAGS (added to every distill
# command, e.g. --bf16), WORK (/tmp/llmpress-bench-distill).
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${1:-build}
SHARED=${SHARED:-../shared}
THREADS=${THREADS:-2}
STEPS=${STEPS:-300}
BATCH=${BATCH:-8}
SEQLEN=${SEQLEN:-256}
LR=${LR:-1e-3}
FLAGS=${FLAGS:-}
STUDENTS=${STUDENTS:-layers sparse24 svdllm heads}
WORK=${WORK:-/tmp/llmpress-bench-distill}
TEACHER="$SHARED/models/gutenberg-dev-llama-5m-long"
CALIB="--calib $SHARED/data/gutenberg-dev-calib.txt --nsamples 128 --seqlen 256"
TRAIN="$SHARED/data/gutenberg-dev-train.txt"
EVAL="$SHARED/data/gutenberg-dev-eval.txt"
declare -A LOSS_FLAGS=(
  [ce]="--loss ce" [fkl]="--loss fkl" [rkl]="--loss rkl" [jsd]="--loss jsd --beta 0.5" [tvd]="--loss tvd"
  [skl]="--loss skl --alpha 0.1" [srkl]="--loss srkl --alpha 0.1" [fkl+ce]="--loss fkl --ce-weight 0.5"
  [jsd-onpolicy]="--loss jsd --beta 0.5 --on-policy 0.5"
  [fkl-cache8]="--loss fkl --cache-topk 8" [fkl-cache32]="--loss fkl --cache-topk 32"
  [fkl-cache128]="--loss fkl --cache-topk 128"
)
LOSSES=${LOSSES:-ce fkl rkl jsd tvd skl srkl fkl+ce jsd-onpolicy}
mkdir -p "$WORK"

ppl() { "$BUILD/llmpress" perplexity -m "$1" -f "$EVAL" -c 256 -t "$THREADS" --json --no-progress 2>/dev/null | \
  /usr/bin/python3 -c "import json,sys; print('%.4f' % json.loads(sys.stdin.read())['perplexity'])"; }

make_student() {  # name -> folder
  local out="$WORK/student-$1"
  [ -d "$out" ] && return
  case $1 in
    layers)   "$BUILD/llmpress" prune -m "$TEACHER" -o "$out" --method layers --count 2 $CALIB --no-progress ;;
    sparse24) "$BUILD/llmpress" prune -m "$TEACHER" -o "$out" --method sparsegpt --pattern 2:4 $CALIB --no-progress ;;
    svdllm)   "$BUILD/llmpress" lowrank -m "$TEACHER" -o "$out" --method svd-llm --ratio 0.6 $CALIB --no-progress ;;
    heads)    "$BUILD/llmpress" prune -m "$TEACHER" -o "$out" --method heads --ratio 0.5 $CALIB --no-progress ;;
  esac > "$WORK/student-$1.log" 2>&1
}

teacher_ppl=$(ppl "$TEACHER")
echo "teacher gutenberg-dev-llama-5m-long: $teacher_ppl; $STEPS steps of $BATCH x $SEQLEN tokens, lr $LR, ${FLAGS:+$FLAGS, }$THREADS threads, $(date -u +%F)"
printf "| student | perplexity | loss | after | recovered | wall s |\n|---|---|---|---|---|---|\n"
for s in $STUDENTS; do
  make_student "$s"
  before=$(ppl "$WORK/student-$s")
  for loss in $LOSSES; do
    out="$WORK/out-$s-$loss"
    cache=""
    [[ $loss == *cache* ]] && rm -f "$out.cache" && cache="--teacher-cache $out.cache"
    start=$(date +%s.%N)
    "$BUILD/llmpress" distill -m "$WORK/student-$s" --teacher "$TEACHER" -f "$TRAIN" -o "$out" ${LOSS_FLAGS[$loss]} $cache \
      --steps "$STEPS" -b "$BATCH" --seqlen "$SEQLEN" --lr "$LR" --warmup 10 -t "$THREADS" --no-progress $FLAGS \
      > "$out.log" 2>&1 || { tail -3 "$out.log"; exit 1; }
    wall=$(echo "$(date +%s.%N) - $start" | bc -l)
    after=$(ppl "$out")
    size=""
    [ -n "$cache" ] && size=" ($(du -m "$out.cache" | cut -f1) MiB cache)"
    printf "| %s | %s | %s%s | %s | %.1f%% | %.0f |\n" "$s" "$before" "$loss" "$size" "$after" \
      "$(echo "100 * ($before - $after) / ($before - $teacher_ppl)" | bc -l)" "$wall"
  done
done
