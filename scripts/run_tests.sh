#!/usr/bin/env bash
# Run the test suite offline, float32 on CPU.
#   bash scripts/run_tests.sh                 the whole suite, on 2 pytest-xdist workers (one file per worker
#                                             at a time: a file's module fixtures are built once), slowest 30 listed
#   bash scripts/run_tests.sh tests/x.py -k y  those tests, in this process
# TEST_WORKERS=N changes the worker count of the whole-suite run (0: no workers, one process).
set -euo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 JAX_PLATFORMS=cpu
if [ $# -eq 0 ]; then
  # Much of the suite is single-threaded (XLA compiles, tracing, speech synthesis, servers waiting on
  # sockets), so two workers overlap what one process leaves idle on a 2-core machine.
  WORKERS=${TEST_WORKERS:-2}
  set -- tests --durations=30
  [ "$WORKERS" = 0 ] || set -- "$@" -n "$WORKERS" --dist loadfile
fi
exec "${VENV:-.venv}/bin/python" -m pytest -q "$@"
