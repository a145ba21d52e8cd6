#!/usr/bin/env bash
# Download, into .whl/ (git-ignored), the Python 3.12 x86-64 wheels that the lent GPU machine
# (nvidia-h200: Python 3.12, jax 0.11.2 + CUDA 13, torch, transformers, ... already installed; no
# network) lacks and aura_jax needs. scripts/device_check.sh installs them there with
# `pip install --no-index --no-deps --target`. The set: our requirements' closure minus the
# machine's package list (/work/.library/device/KINDS.md), plus flax/optax/orbax/chex at the
# versions the project is tested with on jax 0.11.2 (scripts/requirements-lock-py312.txt).
# The working tree and these wheels travel together, 64 MiB in all: this script checks the sum.
set -euo pipefail
cd "$(dirname "$0")/.."
WHEELS=(
  flax==0.12.12 optax==0.2.8 orbax-checkpoint==0.12.8 chex==0.1.92
  grain==0.2.18 array-record==0.8.6 portpicker==1.6.0
  soundfile==0.14.0 cffi==2.1.1 pycparser==3.12 soxr==1.1.0
  librosa==0.11.0 audioread==3.1.0 decorator==5.3.1 pooch==1.9.0 platformdirs==4.14.9
  tensorboardx==2.6.5 jiwer==4.0.0 rapidfuzz==3.14.6
  whisper-normalizer==0.1.15 more-itertools==11.2.1 indic-numtowords==1.1.0 text2num==3.1.0
)
PLATFORMS=()
for n in 39 35 34 31 28 27 24 17 5; do PLATFORMS+=(--platform "manylinux_2_${n}_x86_64"); done
PLATFORMS+=(--platform manylinux2014_x86_64 --platform manylinux1_x86_64)
PY=${PYTHON:-python3}
mkdir -p .whl
rm -f .whl/*.whl
"$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  "${PLATFORMS[@]}" -d .whl "${WHEELS[@]}"
count=$(ls .whl/*.whl | wc -l)
[ "$count" = "${#WHEELS[@]}" ] || { echo "device_wheels.sh: expected ${#WHEELS[@]} wheels, got $count" >&2; exit 1; }
wheels=$(du -cb .whl/*.whl | tail -1 | cut -f1)
tree=$(git ls-files -z | xargs -0 du -cb 2>/dev/null | tail -1 | cut -f1)
limit=$((64 * 1024 * 1024))
echo "device_wheels.sh: $count wheels, $((wheels / 1024)) KiB; tree $((tree / 1024)) KiB; together $(((wheels + tree) / 1024)) of $((limit / 1024)) KiB"
[ $((wheels + tree)) -lt $limit ] || { echo "device_wheels.sh: over the 64 MiB that travels" >&2; exit 1; }
