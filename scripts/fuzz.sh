#!/usr/bin/env bash
# Builds the libFuzzer harnesses (fuzz/, clang + ASan + UBSan), makes their seed corpora from the real
# files in ../shared (at run time; nothing is copied into the project) and runs every harness.
#
#   scripts/fuzz.sh smoke [SECONDS]   each harness for SECONDS (default 10): the test suite's smoke run
#   scripts/fuzz.sh long [RUNS]       each harness for RUNS executions (default 1000000): bench/fuzz.sh
#   FUZZ_ONLY="gguf recipe" ...       only these harnesses
#
# Needs the main build (build/llmpress writes the derived seeds: small quantized, GPTQ and sparse models).
# Findings (crash, leak, sanitizer report, timeout, out-of-memory) go to build/fuzz/findings/HARNESS/;
# the script prints one line per harness and exits 1 when any harness found something in this run
# (findings of earlier runs stay in the folder and are not counted again).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
mode="${1:-smoke}"
shared="${LLMPRESS_SHARED_DIR:-${LLMPRESS_SHARED_DIR_DEFAULT:-$root/../shared}}"
llmpress="${LLMPRESS_BINARY:-$root/build/llmpress}"
out="${FUZZ_BUILD_DIR:-$root/build/fuzz}"
case "$mode" in
  smoke) limit=(-max_total_time="${2:-10}" -seed=1) ;;  # a fixed seed: the same inputs on every CI run
  long) limit=(-runs="${2:-1000000}") ;;
  *) echo "usage: scripts/fuzz.sh smoke [SECONDS] | long [RUNS]" >&2; exit 2 ;;
esac
# 77: skipped (ctest's SKIP_RETURN_CODE), as the tests skip without the shared models.
[ -d "$shared/models/stories260K" ] || { echo "fuzz: $shared/models not found (set LLMPRESS_SHARED_DIR); skipping"; exit 77; }
[ -x "$llmpress" ] || { echo "fuzz: $llmpress not built (cmake --build build first)" >&2; exit 1; }
command -v clang++ >/dev/null || { echo "fuzz: clang++ not installed (scripts/setup.sh installs it)" >&2; exit 1; }

cmake -S "$root/fuzz" -B "$out" -G Ninja -DCMAKE_CXX_COMPILER=clang++ >/dev/null
cmake --build "$out" -j"$(nproc)" >/dev/null

all_harnesses="gguf llama2c hf_model safetensors sentencepiece tokenizer_json llama2c_tokenizer hf_config recipe
               task_file train_records tensor_file teacher_cache"

# Seed corpora: the shared files themselves, and small files llmpress derives from them.
seeds="$out/seeds"
if [ ! -f "$seeds/.done" ]; then
  rm -rf "$seeds" && mkdir -p "$seeds"
  tmp="$(mktemp -d)"; trap 'rm -rf "$tmp"' EXIT
  s260="$shared/models/stories260K" g5m="$shared/models/gutenberg-dev-llama-5m"
  for h in $all_harnesses; do mkdir -p "$seeds/$h"; done
  q() { "$llmpress" "$@" >/dev/null 2>&1 || { echo "fuzz: seed step failed: llmpress $*" >&2; exit 1; }; }
  # Small inputs fuzz fast: stories260K cut to its first layer (a third of its bytes are the embeddings).
  q prune -m "$s260/stories260K-F32.gguf" -o "$tmp/one.gguf" --method layers --count 4 --calib "$shared/data/tinystories-calib.txt" --nsamples 4 --seqlen 64
  q convert -m "$tmp/one.gguf" -o "$seeds/gguf/F16.gguf" --type F16
  for t in Q4_0 Q5_1 Q8_0 Q2_K Q3_K_S Q4_K_M Q6_K; do q quantize -m "$tmp/one.gguf" -o "$seeds/gguf/$t.gguf" --type "$t"; done
  q convert -m "$tmp/one.gguf" -o "$seeds/llama2c/one.bin"
  head -c 4096 "$s260/stories260K.bin" > "$seeds/llama2c/stories260K-head.bin"
  q convert -m "$tmp/one.gguf" -o "$tmp/hf" --type F16
  # GPTQ packing needs widths that are multiples of 32: gutenberg-dev's one first layer, 2-bit.
  q prune -m "$g5m" -o "$tmp/g1" --method layers --count 5 --calib "$shared/data/gutenberg-dev-calib.txt" --nsamples 4 --seqlen 64
  q quantize -m "$tmp/g1" -o "$tmp/gptq" --format gptq --method gptq --bits 2 --group 64 --calib "$shared/data/gutenberg-dev-calib.txt" --nsamples 4 --seqlen 64
  q prune -m "$tmp/one.gguf" -o "$tmp/sparse" --method magnitude --pattern 2:4 --format sparse
  # K-quant blocks hold 256 columns: stories260K's 64-wide rows fall back to Q4_0/Q5_0, gutenberg-dev's do not.
  for t in Q2_K Q4_K_M Q6_K; do q quantize -m "$tmp/g1" -o "$seeds/gguf/gutenberg-$t.gguf" --type "$t"; done
  for d in hf gptq sparse; do
    { cat "$tmp/$d/config.json"; printf '\n--8<--\n'; cat "$tmp/$d/model.safetensors"; } > "$seeds/hf_model/$d"
    cp "$tmp/$d/model.safetensors" "$seeds/safetensors/$d.safetensors"
    cp "$tmp/$d/config.json" "$seeds/hf_config/$d.json"
    [ -f "$tmp/$d/tokenizer.json" ] && cp "$tmp/$d/tokenizer.json" "$seeds/tokenizer_json/$d.json"
  done
  # No tokenizer.json in ../shared: a small byte-level BPE one (GPT-2's byte alphabet, five merges, added tokens).
  python3 - "$seeds/tokenizer_json/bpe.json" <<'PY'
import json, sys
bs = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
cs, n = bs[:], 0
for b in range(256):
    if b not in bs:
        bs.append(b); cs.append(256 + n); n += 1
alphabet = dict(zip(bs, map(chr, cs)))
vocab = {alphabet[b]: b for b in range(256)}
for i, piece in enumerate(["\u0120t", "he", "\u0120the", "ll", "llo", "<|endoftext|>"]):
    vocab[piece] = 256 + i
added = [{"id": 261, "content": "<|endoftext|>", "special": True, "single_word": False, "lstrip": False,
          "rstrip": False, "normalized": False}]
tokenizer = {"version": "1.0", "added_tokens": added, "normalizer": None,
             "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True},
             "decoder": {"type": "ByteLevel"},
             "model": {"type": "BPE", "dropout": None, "unk_token": None, "byte_fallback": False, "vocab": vocab,
                       "merges": ["\u0120 t", "h e", "\u0120t he", "l l", "ll o"]}}
json.dump(tokenizer, open(sys.argv[1], "w"), ensure_ascii=False)
PY
  cp "$g5m/config.json" "$seeds/hf_config/gutenberg.json"
  cp "$s260/tok512.model" "$seeds/sentencepiece/"; cp "$g5m/tokenizer.model" "$seeds/sentencepiece/gutenberg.model"
  cp "$s260/tok512.bin" "$seeds/llama2c_tokenizer/"
  q gen-tasks -n 4 -o "$seeds/task_file/skills.jsonl"
  printf '%s\n' '{"task": "mc", "prompt": "Q: sky?", "choices": [" blue", " green"], "label": 0, "rationale": "r", "demos": [{"prompt": "Q: grass?", "answer": "green"}]}' > "$seeds/task_file/mc.jsonl"
  q gen-data --mode gold --shots 2 --tasks "$seeds/task_file/skills.jsonl" -o "$seeds/train_records/gold.jsonl"
  head -c 2000 "$shared/data/tinystories-calib.txt" > "$seeds/train_records/text.txt"
  FUZZ_WRITE_SEED="$seeds/teacher_cache/cache" "$out/fuzz_teacher_cache" -runs=0 >/dev/null 2>&1
  q quantize -m "$s260/stories260K-F32.gguf" -o "$tmp/q8.gguf" --type Q8_0 --work-dir "$tmp/work" --save-recipe "$seeds/recipe/quantize.yaml"
  find "$tmp/work" -type f -size -2M ! -name '*.json' -exec cp {} "$seeds/tensor_file/" \; 2>/dev/null || true
  q prune -m "$s260/stories260K-F32.gguf" -o "$tmp/p.gguf" --method wanda --sparsity 0.5 --save-recipe "$seeds/recipe/prune.yaml" --calib "$shared/data/tinystories-calib.txt" --nsamples 4 --seqlen 64
  touch "$seeds/.done"
fi

status=0
harnesses="${FUZZ_ONLY:-$all_harnesses}"
printf '%-20s %10s %9s %7s %s\n' harness executions exec/s corpus findings
for h in $harnesses; do
  corpus="$out/corpus/$h" findings="$out/findings/$h"
  mkdir -p "$corpus" "$findings"
  log="$out/logs/$h.log"; mkdir -p "$out/logs"
  stamp="$out/logs/$h.started"; touch "$stamp"
  # -rss_limit_mb / -malloc_limit_mb: an input that makes a reader allocate 2 GB is a finding (the
  # reader should have checked the size against the file first).
  "$out/fuzz_$h" "${limit[@]}" -timeout=20 -rss_limit_mb=4096 -malloc_limit_mb=2048 \
    -artifact_prefix="$findings/" -print_final_stats=1 "$corpus" "$seeds/$h" \
    $( [ -d "$root/fuzz/regressions/$h" ] && echo "$root/fuzz/regressions/$h" ) >"$log" 2>&1 || status=1
  runs="$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo 0)"
  speed="$(grep -o 'stat::average_exec_per_sec: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo 0)"
  n_findings="$(find "$findings" -type f -newer "$stamp" | wc -l)"
  printf '%-20s %10s %9s %7s %s\n' "$h" "$runs" "$speed" "$(find "$corpus" -type f | wc -l)" "$n_findings"
  [ "$n_findings" -eq 0 ] || { status=1; grep -m3 -E 'ERROR|runtime error|SUMMARY' "$log" | sed 's/^/    /'; }
done
exit $status
