#!/usr/bin/env bash
# One-command setup on a fresh machine (Debian/Ubuntu, Python >= 3.10).
# Order matters: the CPU torch wheel first, so that the package's `torch` requirement is already
# met and pip does not pull a multi-GB CUDA build. GPU users: install the CUDA torch you want first.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! python -c "import torch" 2>/dev/null; then
    pip install "torch==${TORCH_VERSION:-2.13.0}"
fi
# Headless MuJoCo rendering uses EGL (software rendering works without a GPU); libegl1/libgl1 are
# usually present, install them when they are not and apt is available.
if command -v apt-get >/dev/null 2>&1 && ! ldconfig -p | grep -q 'libEGL.so.1'; then
    if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
    $SUDO apt-get update -qq && $SUDO apt-get install -y -qq libegl1 libgl1 libglib2.0-0 >/dev/null
fi
pip install -e ".[test]"
