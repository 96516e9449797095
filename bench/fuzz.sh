#!/usr/bin/env bash
# Long fuzzing runs of every file reader (docs/BENCHMARKS.md, "Fuzzing"): RUNS executions per harness
# (default 1,000,000) under AddressSanitizer + UBSan, corpora kept in build/fuzz/corpus between runs.
#   bench/fuzz.sh [RUNS]          FUZZ_ONLY="gguf recipe" bench/fuzz.sh 200000
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
echo "# fuzz: $(date -u +%Y-%m-%d), $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
start=$SECONDS
"$root/scripts/fuzz.sh" long "${1:-1000000}"
echo "# total: $((SECONDS - start)) s"
