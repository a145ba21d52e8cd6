#!/usr/bin/env bash
# Create or refresh the project environment in .venv/ at the repo root.
# Pinned to versions checked together on CPU (Python 3.11). torch is pinned to
# the CPU wheel first: an unpinned torch would pull a multi-GB CUDA build.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q "torch==2.13.0"
.venv/bin/python -m pip install -q -r scripts/requirements-lock.txt
.venv/bin/python -m pip install -q --no-deps -e .
# CFM/PEDANTS: qa-metrics 0.2.26 is the last release with both CFMatcher and PEDANT. Its
# scikit-learn==1.3.2 pin cannot be met next to numpy 2; it runs on the current one.
.venv/bin/python -m pip install -q --no-deps "qa-metrics==0.2.26"
# Synthesized speech for the demo and tests (optional: a generated signal is the fallback).
if ! command -v espeak-ng >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  (apt-get update -qq && apt-get install -y -qq espeak-ng >/dev/null) || echo "note: espeak-ng not installed; using generated signals"
fi
