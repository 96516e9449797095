#!/usr/bin/env bash
# Installs every system dependency of llmpress from Debian 12 packages, then the prebuilt llama.cpp the
# tests run our GGUF files with (node-llama-cpp from the npm registry, into tools/llamacpp-node).
# Idempotent: packages already present are skipped. Runs as root, or through sudo otherwise.
# LLMPRESS_SKIP_LLAMACPP_NODE=1 skips the npm step (the llama.cpp tests then skip).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

packages=(
  build-essential cmake ninja-build pkg-config
  libtorch-dev                  # tensors, linear algebra (libtorch, the PyTorch C++ API)
  libgloo-dev                   # headers of Gloo, torch.distributed's CPU backend (data-parallel jobs)
  libopenblas0-openmp           # optimized BLAS behind libtorch (Debian defaults to the slow reference BLAS)
  nlohmann-json3-dev libcli11-dev libyaml-cpp-dev
  libpcre2-dev
  sentencepiece                 # spm_encode: the tests' independent reference tokenizer
  python3-torch                 # the distillation loss tests' PyTorch reference (after libtorch: +27 MB, 1-2 min)
  libgtest-dev
  clang libclang-rt-14-dev      # the fuzz harnesses (fuzz/): libFuzzer, AddressSanitizer, UBSan runtimes
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
install_debian_packages() {
  if [ ${#missing[@]} -eq 0 ]; then
    echo "setup: all ${#packages[@]} packages already installed"
    return
  fi
  local SUDO=""
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null || { echo "setup: not root and no sudo; install as root: ${missing[*]}" >&2; exit 1; }
    SUDO="sudo"
  fi
  echo "setup: installing ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
}
install_debian_packages

# llama.cpp for the tests: node-llama-cpp 3.21.1 and its prebuilt CPU binary (@node-llama-cpp/linux-x64),
# exactly as tools/llamacpp-node/package-lock.json pins them. Needs Node.js >= 20 (Debian 12's nodejs is
# 18: install Node 20 from elsewhere) and the npm registry; nothing is downloaded from GitHub or compiled
# (--ignore-scripts skips node-llama-cpp's postinstall, NODE_LLAMA_CPP_SKIP_DOWNLOAD its fallback build).
# --omit=optional leaves out the other platforms' binaries (the CUDA ones are 540 MB). Skipped when the
# stamp file says node_modules already matches the lock file.
install_llamacpp_node() {
  local dir="$root/tools/llamacpp-node"
  local stamp="$dir/node_modules/.llmpress-installed"
  if [ "${LLMPRESS_SKIP_LLAMACPP_NODE:-0}" = 1 ]; then
    echo "setup: LLMPRESS_SKIP_LLAMACPP_NODE=1, not installing node-llama-cpp (llama.cpp tests will skip)"
    return
  fi
  if [ "$(uname -s)" != Linux ] || [ "$(uname -m)" != x86_64 ]; then
    echo "setup: node-llama-cpp is pinned for linux x86_64 only; llama.cpp tests will skip on $(uname -sm)"
    return
  fi
  if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
    echo "setup: no node/npm on PATH (Node.js >= 20 needed); llama.cpp tests will skip"
    return
  fi
  local major
  major="$(node -p 'process.versions.node.split(".")[0]')"
  if [ "$major" -lt 20 ]; then
    echo "setup: node $(node --version) is too old for node-llama-cpp (>= 20 needed); llama.cpp tests will skip"
    return
  fi
  local want
  want="$(sha256sum "$dir/package-lock.json" | cut -d' ' -f1)"
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] &&
     [ -f "$dir/node_modules/node-llama-cpp/package.json" ] &&
     [ -f "$dir/node_modules/@node-llama-cpp/linux-x64/bins/linux-x64/llama-addon.node" ]; then
    echo "setup: node-llama-cpp already installed in tools/llamacpp-node"
    return
  fi
  echo "setup: installing node-llama-cpp into tools/llamacpp-node (npm ci)"
  (cd "$dir" && NODE_LLAMA_CPP_SKIP_DOWNLOAD=true npm ci --omit=optional --ignore-scripts \
     --no-audit --no-fund --loglevel=error >/dev/null) ||
    { echo "setup: npm ci failed in $dir (set LLMPRESS_SKIP_LLAMACPP_NODE=1 to skip this step)" >&2; exit 1; }
  echo "$want" > "$stamp"
}
install_llamacpp_node
