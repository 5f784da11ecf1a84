#!/usr/bin/env bash
# Set-up for a fresh machine: a Python 3.11 venv, the pinned packages, llama.cpp built
# once and cached, the models, MovieLens and the Chroma catalogue. Safe to re-run: every
# step skips what is already there. Sourced by quickstart.sh and test.sh.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
export CDAREC_HOME="${CDAREC_HOME:-$HOME/.cache/cdarec}"
WHEELS="$CDAREC_HOME/wheels"
LLAMA_VERSION="0.3.36"
PYTHON="${PYTHON:-python3.11}"
mkdir -p "$WHEELS"

step() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }

if ! command -v "$PYTHON" >/dev/null 2>&1; then
  echo "cdarec needs Python 3.11 ($PYTHON not found). Install it, or set PYTHON=/path/to/python3.11." >&2
  exit 1
fi

if [ ! -x .venv/bin/python ]; then
  step "creating .venv"
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --disable-pip-version-check --upgrade "pip==25.3" wheel

if ! ls "$WHEELS"/llama_cpp_python-"$LLAMA_VERSION"-*.whl >/dev/null 2>&1; then
  step "building llama-cpp-python $LLAMA_VERSION once (about 7 minutes on 2 cores; cached in $WHEELS)"
  # GGML_NATIVE=OFF: a portable binary that also runs on other CPUs of the same arch.
  CMAKE_ARGS="-DGGML_NATIVE=OFF" .venv/bin/python -m pip wheel --no-deps --disable-pip-version-check \
    "llama-cpp-python==$LLAMA_VERSION" -w "$WHEELS"
fi

step "installing cdarec and its pinned dependencies"
.venv/bin/python -m pip install --quiet --disable-pip-version-check \
  --find-links "$WHEELS" -e ".[dev]"
