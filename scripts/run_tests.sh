#!/usr/bin/env bash
# Run the test suite offline, float32 on CPU.
set -euo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 JAX_PLATFORMS=cpu
if [ $# -eq 0 ]; then set -- tests; fi
exec "${VENV:-.venv}/bin/python" -m pytest -q "$@"
