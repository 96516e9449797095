#!/usr/bin/env bash
# On-disk size of magnitude-pruned gutenberg-dev-llama-5m (50% unstructured and 2:4) as the dense
# folder `prune` writes and as compressed-tensors sparse checkpoints (bench/sparse_export, which also
# checks that every tensor reads back equal). Prints a Markdown table.
#
#   bench/sparse_size.sh [BUILD_DIR]
#
# Environment: SHARED (default ../shared), WORK (scratch folder, default /tmp/llmpress-bench-sparse).
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${1:-build}
SHARED=${SHARED:-../shared}
WORK=${WORK:-/tmp/llmpress-bench-sparse}
MODEL=$SHARED/models/gutenberg-dev-llama-5m
mkdir -p "$WORK"

bytes() { du -b --apparent-size -s "$1" | cut -f1; }

echo "| pruning | dtype | dense folder (bytes) | format | compressed folder (bytes) | ratio |"
echo "|---|---|---:|---|---:|---:|"
for pruning in "--sparsity 0.5" "--pattern 2:4"; do
  for type in F32 F16; do
    rm -rf "$WORK/dense"
    # shellcheck disable=SC2086
    "$BUILD/llmpress" prune -m "$MODEL" -o "$WORK/dense" --method magnitude $pruning --type "$type" \
      > "$WORK/prune.log" 2>&1 || { cat "$WORK/prune.log" >&2; exit 1; }
    formats="sparse-bitmask"
    [ "$pruning" = "--pattern 2:4" ] && formats="sparse-bitmask sparse-24-bitmask"
    for format in $formats; do
      rm -rf "$WORK/sparse"
      "$BUILD/sparse_export" -m "$WORK/dense" -o "$WORK/sparse" --format "$format" > "$WORK/export.log" 2>&1 ||
        { cat "$WORK/export.log" >&2; exit 1; }
      dense=$(bytes "$WORK/dense")
      sparse=$(bytes "$WORK/sparse")
      echo "| ${pruning#--} | $type | $dense | $format | $sparse | $(python3 -c "print('%.3f' % ($sparse / $dense))") |"
    done
  done
done
