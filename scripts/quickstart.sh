#!/usr/bin/env bash
# Quickstart command 1: set everything up and open the chat on the embedded defaults
# (device: Qwen2.5-Coder-0.5B in process; cloud: Qwen2.5-Coder-1.5B behind a local
# OpenAI-compatible llama.cpp server). No API key, no Ollama needed.
# Extra arguments go to `cdarec chat` (default: --user 1m_1).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"
.venv/bin/cdarec setup
if [ "$#" -eq 0 ]; then set -- --user 1m_1; fi
exec .venv/bin/cdarec chat "$@"
