#!/usr/bin/env bash
# Data-parallel jobs (docs/BENCHMARKS.md, "Data-parallel training and calibration"): the same job as
# one process (all cores) and as N processes (--nproc N, the cores shared), timed in one run, with
# what each gives: training losses and held-out perplexity, GPTQ output perplexity.
#   bench/data_parallel.sh [N]      (default 2)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
llmpress="${LLMPRESS_BINARY:-$root/build/llmpress}"
shared="${LLMPRESS_SHARED_DIR:-$root/../shared}"
n="${1:-2}"
model="$shared/models/gutenberg-dev-llama-5m"
train="$shared/data/gutenberg-dev-train.txt"
calib="$shared/data/gutenberg-dev-calib.txt"
eval="$shared/data/gutenberg-dev-eval.txt"
work="$(mktemp -d)"; trap 'rm -rf "$work"' EXIT
echo "# $(date -u +%Y-%m-%d), $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)); N = $n"
seconds() {  # runs the command, prints its wall time in seconds
  local start; start=$(date +%s%N)
  "$@" > "$work/out" 2> "$work/err" || { cat "$work/err" >&2; exit 1; }
  local ms=$(( ($(date +%s%N) - start) / 1000000 )); printf "%d.%03d" $((ms / 1000)) $((ms % 1000))
}
ppl() { "$llmpress" perplexity -m "$1" -f "$eval" -c 256 --chunks 40 --no-progress 2>/dev/null | sed -n 's/^ppl = \([0-9.]*\).*/\1/p'; }

job=(train -m "$model" -f "$train" --steps 30 -b 8 --seqlen 256 --lr 3e-4 --no-progress --type F32)
for procs in 1 "$n"; do
  flag=(); [ "$procs" = 1 ] || flag=(--nproc "$procs")
  t=$(seconds "$llmpress" "${job[@]}" "${flag[@]}" -o "$work/train-$procs.gguf")
  printf "train   %d process(es): %7.1f s  %s  eval ppl %s\n" "$procs" "$t" "$(grep -o 'loss [0-9.]* -> [0-9.]*' "$work/out")" \
    "$(ppl "$work/train-$procs.gguf")"
done
job=(quantize -m "$model" --method gptq --type Q4_K_M --calib "$calib" --nsamples 128 --seqlen 256 --no-progress)
for procs in 1 "$n"; do
  flag=(); [ "$procs" = 1 ] || flag=(--nproc "$procs")
  t=$(seconds "$llmpress" "${job[@]}" "${flag[@]}" -o "$work/gptq-$procs.gguf")
  printf "gptq    %d process(es): %7.1f s  output ppl %s\n" "$procs" "$t" "$(ppl "$work/gptq-$procs.gguf")"
done
