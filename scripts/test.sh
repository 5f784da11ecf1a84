#!/usr/bin/env bash
# Quickstart command 2: the same set-up, then lint and the whole test suite (unit and
# integration tests on the real small models, real Chroma and real HTTP servers).
# Extra arguments go to pytest.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"
step "pulling the test model and the data sets"
.venv/bin/cdarec models pull smollm2-135m
.venv/bin/cdarec data pull ml-100k ml-1m
# Debian's packages the tests drive: chromium (the browser test, through Playwright) and
# postgresql (the PostgreSQL-backend tests start their own throwaway server on loopback
# from its binaries; the package's own cluster is not used).
APT=()
command -v chromium >/dev/null 2>&1 || APT+=(chromium)
command -v initdb >/dev/null 2>&1 || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 \
  || APT+=(postgresql)
if [ "${#APT[@]}" -gt 0 ]; then
  step "installing Debian's ${APT[*]} for the browser and PostgreSQL tests"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq || true
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${APT[@]}" >/dev/null
fi
step "ruff"
.venv/bin/ruff check cdarec tests
step "import-linter (the cloud-device boundary and the layers, pyproject.toml)"
.venv/bin/lint-imports --no-cache
step "pytest"
.venv/bin/python -m pytest "$@"
