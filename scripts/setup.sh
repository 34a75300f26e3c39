#!/usr/bin/env bash
# Set up everything the project needs on a fresh Debian/Ubuntu machine (idempotent):
# espeak-ng (test fixtures, training corpus), a virtual environment in .venv, the CPU build
# of PyTorch (installed first, pinned, so pip does not pull several GB of CUDA packages),
# then this project with its [dev] extra.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v espeak-ng >/dev/null 2>&1; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq espeak-ng >/dev/null
fi

PYTHON="${PYTHON:-python3}"
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
PIP=".venv/bin/python -m pip"
$PIP install -q --upgrade pip
.venv/bin/python -c "import torch" 2>/dev/null || $PIP install -q "torch==2.13.0"
$PIP install -q -e ".[dev]"
.venv/bin/python -c "import torch, onnxruntime, diffwave, export, runtime" 
