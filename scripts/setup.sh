#!/usr/bin/env bash
# Installs every system dependency of llmpress from Debian 12 packages. Idempotent:
# packages already present are skipped. Runs as root, or through sudo otherwise.
set -euo pipefail

packages=(
  build-essential cmake ninja-build pkg-config
  libtorch-dev                  # tensors, linear algebra (libtorch, the PyTorch C++ API)
  libopenblas0-openmp           # optimized BLAS behind libtorch (Debian defaults to the slow reference BLAS)
  nlohmann-json3-dev libcli11-dev libyaml-cpp-dev
  libpcre2-dev
  sentencepiece                 # spm_encode: the tests' independent reference tokenizer
  python3-torch                 # the distillation loss tests' PyTorch reference (after libtorch: +27 MB, 1-2 min)
  libgtest-dev
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "setup: all ${#packages[@]} packages already installed"
  exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { echo "setup: not root and no sudo; install as root: ${missing[*]}" >&2; exit 1; }
  SUDO="sudo"
fi
echo "setup: installing ${missing[*]}"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
