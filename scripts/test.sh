#!/usr/bin/env bash
# Quickstart command 2: the same set-up, then lint and the whole test suite (unit and
# integration tests on the real small models, real Chroma and real HTTP servers).
# Extra arguments go to pytest.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"
step "pulling the test model and the data sets"
.venv/bin/cdarec models pull smollm2-135m
.venv/bin/cdarec data pull ml-100k ml-1m
if ! command -v chromium >/dev/null 2>&1; then
  step "installing Debian's chromium for the browser test (Playwright drives it)"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq || true
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium >/dev/null
fi
step "ruff"
.venv/bin/ruff check cdarec tests
step "import-linter (the cloud-device boundary and the layers, pyproject.toml)"
.venv/bin/lint-imports --no-cache
step "pytest"
.venv/bin/python -m pytest "$@"
