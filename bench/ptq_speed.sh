#!/usr/bin/env bash
# GPTQ and perplexity time of llmpress beside the GPTQ authors' code and a PyTorch eager evaluation,
# on one thread, the same model, calibration size and eval windows, in one run.
#
#   GPTQ_REF=/path/to/IST-DASLab/gptq bench/ptq_speed.sh [BUILD_DIR]
#
# Environment: SHARED (default ../shared), THREADS (default 1), NSAMPLES (128), SEQLEN (256), WORK
# (scratch folder, default /tmp/llmpress-bench). The reference side is bench/gptq_reference_speed.py
# under Debian's /usr/bin/python3 (python3-torch, python3-sentencepiece). GPTQ: int3, group 128,
# act-order, true-sequential, dampening 0.01; perplexity: the GPTQ convention over the whole
# gutenberg-dev-eval.txt (non-overlapping windows of SEQLEN tokens).
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${1:-build}
SHARED=${SHARED:-../shared}
THREADS=${THREADS:-1}
NSAMPLES=${NSAMPLES:-128}
SEQLEN=${SEQLEN:-256}
WORK=${WORK:-/tmp/llmpress-bench}
: "${GPTQ_REF:?set GPTQ_REF to a checkout of github.com/IST-DASLab/gptq}"
mkdir -p "$WORK"
MODEL="$SHARED/models/gutenberg-dev-llama-5m"
CALIB="$SHARED/data/gutenberg-dev-calib.txt"
EVAL="$SHARED/data/gutenberg-dev-eval.txt"

start=$(date +%s.%N)
"$BUILD/llmpress" quantize -m "$MODEL" -o "$WORK/int3-speed" --format dense --method gptq --bits 3 --group 128 \
  --act-order --calib "$CALIB" --nsamples "$NSAMPLES" --seqlen "$SEQLEN" -t "$THREADS" --no-progress > /dev/null
ours_gptq=$(python3 -c "import time; print('%.2f' % (time.time() - $start))")
"$BUILD/llmpress" perplexity -m "$MODEL" -f "$EVAL" -c "$SEQLEN" --chunks -1 -t "$THREADS" --json --no-progress \
  > "$WORK/ppl-speed.json"
read -r ours_ppl_s ours_ppl ours_windows <<< "$(python3 -c "import json; d=json.load(open('$WORK/ppl-speed.json')); print('%.2f %.4f %d' % (d['seconds'], d['perplexity'], d['chunks']))")"
/usr/bin/python3 bench/gptq_reference_speed.py --gptq-repo "$GPTQ_REF" --model "$MODEL" --calib "$CALIB" \
  --eval "$EVAL" --nsamples "$NSAMPLES" --seqlen "$SEQLEN" --act-order --threads "$THREADS" 2>/dev/null | tail -1 \
  > "$WORK/ref-speed.json"
read -r ref_gptq ref_ppl_s ref_ppl ref_windows <<< "$(python3 -c "import json; d=json.load(open('$WORK/ref-speed.json')); print(d['gptq_seconds'], d['eval_seconds'], d['perplexity'], d['eval_windows'])")"

echo "gutenberg-dev-llama-5m, $THREADS thread(s), GPTQ int3 g128 act-order on $NSAMPLES x $SEQLEN tokens, $(date -u +%F)"
echo "| step | llmpress s | reference s | reference / llmpress |"
echo "|---|---|---|---|"
echo "| GPTQ pass (whole quantize command / authors' llama_sequential) | $ours_gptq | $ref_gptq | $(python3 -c "print('%.2f' % ($ref_gptq / $ours_gptq))") |"
echo "| perplexity, $ours_windows / $ref_windows windows (ppl $ours_ppl / $ref_ppl) | $ours_ppl_s | $ref_ppl_s | $(python3 -c "print('%.2f' % ($ref_ppl_s / $ours_ppl_s))") |"
