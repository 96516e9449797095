#!/usr/bin/env bash
# Low-rank factorization benchmark: perplexity of SVD, ASVD and SVD-LLM at parameter ratios 0.9 / 0.8 /
# 0.6 of the linear layers (uniform ranks and ranks allocated by measured output error), SVD-LLM with its
# factors rounded to 8 and 4 bits, Tucker on the attention projections against plain SVD on the same
# layers, and forward throughput of the factorized folder against the dense model. Markdown tables.
#
#   bench/lowrank.sh [BUILD_DIR] [MODEL...]     MODEL: stories260K and/or gutenberg (default both)
#
# Environment: SHARED (default ../shared), THREADS (default 1), NSAMPLES (16), SEQLEN (256),
# CHUNKS (perplexity windows of 256 tokens, default 64), WORK (default /tmp/llmpress-bench-lowrank),
# SECTIONS (any of: methods quant tucker speed; default all).
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${1:-build}
shift || true
MODELS=${*:-stories260K gutenberg}
SHARED=${SHARED:-../shared}
THREADS=${THREADS:-1}
NSAMPLES=${NSAMPLES:-16}
CHUNKS=${CHUNKS:-64}
SEQLEN=${SEQLEN:-256}
WORK=${WORK:-/tmp/llmpress-bench-lowrank}
SECTIONS=${SECTIONS:-methods quant tucker speed}
want() { [[ " $SECTIONS " == *" $1 "* ]]; }
mkdir -p "$WORK"
L="$BUILD/llmpress"

field() {  # json-key -> value from stdin
  python3 -c "import json,sys; v=json.load(sys.stdin)['$1']; print('%.4f' % v if '$1'=='perplexity' else '%.0f' % v)"
}
ppl() { "$L" perplexity -m "$1" -f "$2" -c 256 --chunks "$CHUNKS" --json --no-progress -t "$THREADS" 2>/dev/null | field perplexity; }
tps() { "$L" perplexity -m "$1" -f "$2" -c 256 --chunks "$CHUNKS" --json --no-progress -t "$THREADS" 2>/dev/null | field tokens_per_second; }
lowrank() {  # model calib out args... -> prints "ratio achieved" of the linear layers
  rm -rf "$3"
  "$L" lowrank -m "$1" --calib "$2" -o "$3" --nsamples "$NSAMPLES" --seqlen "$SEQLEN" -t "$THREADS" --no-progress \
    "${@:4}" 2>/dev/null | sed -n 's/^linear parameters: .*(ratio \(.*\))$/\1/p'
}

bench_model() {  # label model calib eval
  local label=$1 model=$2 calib=$3 eval=$4 out="$WORK/out"
  echo
  echo "### $label (dense perplexity $(ppl "$model" "$eval"))"
  echo
  if want methods; then
  echo "Perplexity (linear-parameter ratio achieved in parentheses):"
  echo
  echo "| method | ranks | 0.9 | 0.8 | 0.6 |"
  echo "|---|---|---|---|---|"
  for method in svd asvd svd-llm; do
    for alloc in uniform allocated; do
      local cells="| $method | $alloc"
      for ratio in 0.9 0.8 0.6; do
        local extra=()
        [ "$alloc" = allocated ] && extra=(--allocate)
        local achieved
        achieved=$(lowrank "$model" "$calib" "$out" --method "$method" --ratio "$ratio" "${extra[@]}")
        cells+=" | $(ppl "$out" "$eval") ($achieved)"
      done
      echo "$cells |"
    done
  done
  fi
  if want quant; then
  echo
  echo "SVD-LLM (uniform ranks) with both factors rounded to nearest on an asymmetric grid, group 32"
  echo "(size: MiB of the whole model, linear factors at their packed size, the rest at 16 bits):"
  echo
  echo "| factors | 0.9 | 0.8 | 0.6 |"
  echo "|---|---|---|---|"
  for bits in 16 8 4; do
    local cells="| $bits-bit"
    for ratio in 0.9 0.8 0.6; do
      rm -rf "$out"
      local quant=()
      [ "$bits" != 16 ] && quant=(--bits "$bits" --group 32)
      local size
      size=$("$L" lowrank -m "$model" --calib "$calib" -o "$out" --nsamples "$NSAMPLES" --seqlen "$SEQLEN" -t "$THREADS" \
        --no-progress --method svd-llm --ratio "$ratio" "${quant[@]}" 2>/dev/null |
        sed -n 's/^model size: .* -> \(.*\) MiB$/\1/p')
      cells+=" | $(ppl "$out" "$eval") ($size MiB)"
    done
    echo "$cells |"
  done
  fi
  if want tucker; then
  echo
  echo "Attention projections only (MLP dense), ratio per projection: Tucker (heads x head_dim x hidden,"
  echo "ranks by the HOSVD error bound, HOSVD + 20 HOOI sweeps) against plain SVD and SVD-LLM on the same layers:"
  echo
  echo "| method | 0.9 | 0.8 | 0.6 |"
  echo "|---|---|---|---|"
  for method in tucker svd svd-llm; do
    local cells="| $method"
    for ratio in 0.9 0.8 0.6; do
      local extra=(--format factorized)
      [ "$method" = tucker ] && extra=(--format dense)
      [ "$method" != tucker ] && extra+=(--override 'mlp=0')
      local achieved
      achieved=$(lowrank "$model" "$calib" "$out" --method "$method" --ratio "$ratio" "${extra[@]}")
      cells+=" | $(ppl "$out" "$eval") ($achieved)"
    done
    echo "$cells |"
  done
  fi
  if want speed; then
  echo
  echo "Forward throughput of \`llmpress perplexity\` (tokens/s, -c 256, $THREADS thread(s)); factorized"
  echo "folders from SVD-LLM, uniform ranks:"
  echo
  local cells="| dense $(tps "$model" "$eval")"
  for ratio in 0.9 0.8 0.6; do
    lowrank "$model" "$calib" "$out" --method svd-llm --ratio "$ratio" > /dev/null
    cells+=" | $(tps "$out" "$eval")"
  done
  echo "| dense | factorized 0.9 | factorized 0.8 | factorized 0.6 |"
  echo "|---|---|---|---|"
  echo "$cells |" | sed 's/^| dense /| /'
  fi
}

for m in $MODELS; do
  case $m in
    stories260K) bench_model stories260K "$SHARED/models/stories260K/stories260K.bin" \
                   "$SHARED/data/tinystories-calib.txt" "$SHARED/data/tinystories-eval.txt" ;;
    gutenberg) bench_model gutenberg-dev-llama-5m "$SHARED/models/gutenberg-dev-llama-5m" \
                 "$SHARED/data/gutenberg-dev-calib.txt" "$SHARED/data/gutenberg-dev-eval.txt" ;;
    *) echo "unknown model $m (stories260K, gutenberg)" >&2; exit 1 ;;
  esac
done
