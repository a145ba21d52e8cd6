#!/usr/bin/env bash
# The prepared accelerator check (aura_jax/tools/device_check.py): run from the repository root
# on the lent GPU machine; results go to $OUT (or --out DIR): results.jsonl (each stage as it
# ends), summary.json, summary.md, log.txt. Under 10 minutes of wall time, every stage time-boxed.
#
#   GPU machine:  bash scripts/device_check.sh            (carry .whl, made by scripts/device_wheels.sh)
#   here, in CI:  bash scripts/device_check.sh --small    (tiny shapes on the CPU, about a minute)
#
# Wheels in .whl/ (the packages that machine lacks, for its Python 3.12) are installed into a
# private folder first, when this Python is 3.12.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] && [ -z "${PYTHON:-}" ] && PY=.venv/bin/python
# Models, runs and exports (~20 GB at full size): in memory (/dev/shm) when it has room, else /tmp.
shm_free_gb=$(df -BG --output=avail /dev/shm 2>/dev/null | tail -1 | tr -dc 0-9 || echo 0)
default_work=/tmp/aura_device_check
[ "${shm_free_gb:-0}" -ge 48 ] && default_work=/dev/shm/aura_device_check
WORK=${DEVICE_CHECK_WORK:-$default_work}
if compgen -G ".whl/*.whl" >/dev/null && "$PY" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 12))'; then
  mkdir -p "$WORK"
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$WORK/site" .whl/*.whl
  export PYTHONPATH="$WORK/site${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
exec "$PY" -m aura_jax.tools.device_check --work "$WORK/work" "$@"
