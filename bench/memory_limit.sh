#!/usr/bin/env bash
# Models bigger than memory (docs/BENCHMARKS.md, "Under a memory limit"): a random 201M-parameter model
# (F16 safetensors, 0.40 GB on disk, 0.81 GB once loaded as float32) run inside a cgroup (v1 memory
# controller, as root) whose limit is below the loaded size. perplexity --stream and quantize must
# finish there with the numbers and bytes of the unlimited runs; perplexity without --stream is
# expected to be killed (or to stream by itself when MemAvailable says the model does not fit).
#   sudo bench/memory_limit.sh [LIMIT_MB]      (default 560)
# The test suite runs it on a smaller model (MODEL_SHAPE="--hidden 768 --intermediate 3072 --layers 8
# --heads 12 --kv-heads 12") under a lower limit; exit 77 (skipped) without root, the cgroup v1 memory
# controller or ../shared.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
llmpress="${LLMPRESS_BINARY:-$root/build/llmpress}"
shared="${LLMPRESS_SHARED_DIR:-$root/../shared}"
limit_mb="${1:-560}"
cg=/sys/fs/cgroup/memory/llmpress-bench-$$
[ -w /sys/fs/cgroup/memory ] || { echo "skipped: needs root and the cgroup v1 memory controller at /sys/fs/cgroup/memory" >&2; exit 77; }
[ -d "$shared/models/gutenberg-dev-llama-5m" ] || { echo "skipped: no $shared/models/gutenberg-dev-llama-5m" >&2; exit 77; }
make_random_model="${MAKE_RANDOM_MODEL:-$root/build/make_random_model}"
shape=(${MODEL_SHAPE:---hidden 1024 --intermediate 4096 --layers 12 --heads 16 --kv-heads 16})
work="$(mktemp -d)"; trap 'rm -rf "$work"; rmdir "$cg" 2>/dev/null || true' EXIT
"$make_random_model" -o "$work/model" "${shape[@]}" --vocab 512 >/dev/null
cp "$shared/models/gutenberg-dev-llama-5m/tokenizer.model" "$work/model/"
text="$shared/data/gutenberg-dev-eval.txt"
mkdir -p "$cg"
echo $((limit_mb * 1024 * 1024)) > "$cg/memory.limit_in_bytes"
echo 0 > "$cg/memory.swappiness" 2>/dev/null || true
# Wall time and peak RSS where GNU time is installed (Debian's "time" package).
timed() { if [ -x /usr/bin/time ]; then /usr/bin/time -f "%e s, peak RSS %M KiB" "$@"; else "$@"; fi; }
limited() { ( echo $BASHPID > "$cg/tasks"; exec "$@" ); }
peak() { cat "$cg/memory.max_usage_in_bytes"; }
echo "# $(date -u +%Y-%m-%d), $(nproc) cores; model: $(du -sh "$work/model" | cut -f1) on disk; cgroup limit ${limit_mb} MiB"
ppl=(perplexity -m "$work/model" -f "$text" -c 128 --chunks 8 --no-progress)
timed "$llmpress" "${ppl[@]}" > "$work/free.txt" 2> "$work/free.err"
echo "unlimited perplexity:        $(grep 'ppl =' "$work/free.txt")  ($(tail -1 "$work/free.err"))"
timed "$llmpress" "${ppl[@]}" --stream > "$work/s.txt" 2> "$work/s.err"
echo "unlimited perplexity --stream: $(grep 'ppl =' "$work/s.txt")  ($(tail -1 "$work/s.err"))"
echo 0 > "$cg/memory.max_usage_in_bytes"
if limited "$llmpress" "${ppl[@]}" > "$work/l.txt" 2> "$work/l.err"; then
  echo "limited perplexity:          $(grep 'ppl =' "$work/l.txt")  (cgroup peak $(( $(peak) >> 20 )) MiB; $(grep -c 'one layer at a time' "$work/l.err") automatic stream)"
else
  echo "limited perplexity:          exit $? (killed: the loaded model does not fit)"
fi
echo 0 > "$cg/memory.max_usage_in_bytes"
limited "$llmpress" "${ppl[@]}" --stream > "$work/ls.txt" 2> "$work/ls.err" || { echo "limited --stream failed:"; tail -3 "$work/ls.err"; exit 1; }
echo "limited perplexity --stream: $(grep 'ppl =' "$work/ls.txt")  (cgroup peak $(( $(peak) >> 20 )) MiB)"
# The same output name (the file records its own recipe, output path included).
mkdir -p "$work/free" "$work/limited"
(cd "$work/free" && "$llmpress" quantize -m "$work/model" -o q4_0.gguf --type Q4_0 --no-progress > /dev/null 2>&1)
echo 0 > "$cg/memory.max_usage_in_bytes"
(cd "$work/limited" && limited "$llmpress" quantize -m "$work/model" -o q4_0.gguf --type Q4_0 --no-progress > /dev/null 2> "$work/q.err") || { echo "limited quantize failed:"; tail -3 "$work/q.err"; exit 1; }
echo "limited quantize Q4_0: cgroup peak $(( $(peak) >> 20 )) MiB; output $(cmp -s "$work/free/q4_0.gguf" "$work/limited/q4_0.gguf" && echo identical || echo DIFFERENT) to the unlimited run's"
cmp -s "$work/free/q4_0.gguf" "$work/limited/q4_0.gguf" || exit 1
[ "$(grep 'ppl =' "$work/ls.txt")" = "$(grep 'ppl =' "$work/free.txt")" ] && echo "same perplexity: yes" || { echo "same perplexity: NO"; exit 1; }
