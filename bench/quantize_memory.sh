#!/usr/bin/env bash
# Time and peak memory of format-aware GPTQ (GGUF Q4_K_M, 128 x 512 calibration tokens) on a
# random-init model of TinyLlama-1.1B's shape (hidden 2048, intermediate 5632, 32 heads / 4 kv heads,
# vocab 32000). LAYERS (default 22, the real depth) can be lowered on slow machines: per-layer time
# and the peak stay what they are for the full model, except for the encoded output kept for the
# final write (about 27 MiB per Q4_K_M layer at this shape), which grows with the depth.
#
#   bench/quantize_memory.sh [BUILD_DIR]
#
# Environment: SHARED (../shared), THREADS (2), LAYERS (22), NSAMPLES (128), SEQLEN (512),
# WORK (/tmp/llmpress-bench-memory).
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${1:-build}
SHARED=${SHARED:-../shared}
THREADS=${THREADS:-2}
LAYERS=${LAYERS:-22}
NSAMPLES=${NSAMPLES:-128}
SEQLEN=${SEQLEN:-512}
WORK=${WORK:-/tmp/llmpress-bench-memory}
mkdir -p "$WORK"
# The F32 GGUF carries a synthetic vocabulary (the Hugging Face folder has no tokenizer).
MODEL="$WORK/tinyllama-$LAYERS-layers.gguf"
[ -f "$MODEL" ] || "$BUILD/make_random_model" -o "$WORK/tinyllama-$LAYERS-layers" --gguf "$MODEL" --layers "$LAYERS" > /dev/null
/usr/bin/time -v "$BUILD/llmpress" quantize -m "$MODEL" -o "$WORK/q.gguf" --format gguf --type Q4_K_M \
  --method gptq --calib "$SHARED/data/tinystories-calib.txt" --nsamples "$NSAMPLES" --seqlen "$SEQLEN" \
  -t "$THREADS" > "$WORK/out.txt" 2> "$WORK/err.txt"
grep -E "^time:|bits/weight" "$WORK/out.txt"
grep -E "compress [0-9]+/[0-9]+ .*layer" "$WORK/err.txt" | tr '\r' '\n' | grep layer | tail -2
grep -E "Elapsed|Maximum resident" "$WORK/err.txt"
