#!/usr/bin/env bash
# One-command setup on a fresh machine (Debian/Ubuntu, Python >= 3.10).
# Order matters: torch first, so that the package's `torch` requirement is already met and pip does not
# pull a multi-GB CUDA build onto a machine without a GPU:
#   - NVIDIA GPU (`nvidia-smi -L` works): torch from the default index (its CUDA build);
#   - no GPU: the CPU wheel from PyTorch's CPU index, or from the default index when that index cannot
#     be reached (the first try gives up quickly: --timeout 10 --retries 0).
# A torch that already imports is kept (install the CUDA build of your choice first if you want another).
set -euo pipefail

TORCH_CPU_INDEX="${TORCH_CPU_INDEX:-https://download.pytorch.org/whl/cpu}"

has_nvidia_gpu() {
    command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1
}

install_torch() {
    local spec="torch==${TORCH_VERSION:-2.13.0}"
    if has_nvidia_gpu; then
        echo "setup: NVIDIA GPU found: $spec from the default index (CUDA build)"
        pip install "$spec"
    elif pip install --timeout 10 --retries 0 --index-url "$TORCH_CPU_INDEX" "$spec"; then
        echo "setup: no NVIDIA GPU: installed the CPU build of $spec from $TORCH_CPU_INDEX"
    else
        echo "setup: no NVIDIA GPU, and $TORCH_CPU_INDEX cannot be reached: $spec from the default index"
        pip install "$spec"
    fi
}

# `SB3_PVDR_SETUP_LIB=1 source scripts/setup.sh` only defines the functions above (tests use it).
if [ "${SB3_PVDR_SETUP_LIB:-0}" = 1 ]; then
    return 0 2>/dev/null || exit 0
fi

cd "$(dirname "$0")/.."
if ! python -c "import torch" 2>/dev/null; then
    install_torch
fi
# Headless MuJoCo rendering uses EGL (software rendering works without a GPU); libegl1/libgl1 are
# usually present, install them when they are not and apt is available.
if command -v apt-get >/dev/null 2>&1 && ! ldconfig -p | grep -q 'libEGL.so.1'; then
    if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
    $SUDO apt-get update -qq && $SUDO apt-get install -y -qq libegl1 libgl1 libglib2.0-0 >/dev/null
fi
pip install -e ".[test]"
