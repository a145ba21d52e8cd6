#!/usr/bin/env bash
# AuRA training on one host with several GPUs: a single process sees all local GPUs and the mesh
# (mesh.data / mesh.fsdp / mesh.tensor) spans them; no distributed.* settings are needed.
#
#   LLM=/data/Qwen2.5-7B-Instruct TEACHER=/data/whisper-large-v3 SPEECH=/data/cv-corpus-en \
#   TEXT=/data/textqa.jsonl RUN_DIR=/ckpt/aura bash launch/single_host_gpu.sh [key=value ...]
#
# Environment: bash scripts/setup_env.sh && .venv/bin/python -m pip install "jax[cuda12]==0.10.2"
set -euo pipefail
cd "$(dirname "$0")/.."
: "${RUN_DIR:?set RUN_DIR}"
CONFIG=${CONFIG:-configs/aura_qwen2.5-7b_whisper-large-v3.yaml}
CACHE_DIR=${CACHE_DIR:-$HOME/.cache/aura_jax/xla}   # persistent compilation cache: reruns skip compiling

export XLA_FLAGS="${XLA_FLAGS:-} --xla_gpu_enable_latency_hiding_scheduler=true"
export XLA_PYTHON_CLIENT_MEM_FRACTION=${XLA_PYTHON_CLIENT_MEM_FRACTION:-0.92}

overrides=("run_dir=$RUN_DIR" "compilation_cache_dir=$CACHE_DIR")
[ -n "${LLM:-}" ] && overrides+=("model.llm=$LLM")
[ -n "${TEACHER:-}" ] && overrides+=("model.teacher=$TEACHER")
[ -n "${SPEECH:-}" ] && overrides+=("data.speech.0.path=$SPEECH")
[ -n "${TEXT:-}" ] && overrides+=("data.text.0.path=$TEXT")
exec "${AURA_JAX:-.venv/bin/aura-jax}" train "$CONFIG" "${overrides[@]}" "$@"
