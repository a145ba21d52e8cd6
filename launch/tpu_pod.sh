#!/usr/bin/env bash
# AuRA training on every worker of a Cloud TPU VM pod slice: the same command on all hosts,
# `distributed.enabled=true` → jax.distributed.initialize() finds the coordinator, the process
# count and this host's index from the TPU metadata (aura_jax/training/distributed.py).
#
#   TPU_NAME=my-v5p-64 ZONE=us-east5-a REPO_URL=https://.../aura_jax.git RUN_DIR=gs://bucket/aura \
#   LLM=/mnt/models/Qwen2.5-7B-Instruct TEACHER=/mnt/models/whisper-large-v3 \
#   SPEECH=/mnt/data/cv-corpus-en TEXT=/mnt/data/textqa.jsonl \
#     bash launch/tpu_pod.sh [extra key=value overrides ...]
#
# The model and data paths must exist on EVERY worker (a shared disk / gcsfuse mount, or copies);
# RUN_DIR must be shared too (orbax writes checkpoints from all hosts; gs:// works).
set -euo pipefail
: "${TPU_NAME:?set TPU_NAME (the TPU VM name)}"
: "${ZONE:?set ZONE (e.g. us-east5-a)}"
: "${RUN_DIR:?set RUN_DIR (shared by all workers, e.g. gs://bucket/aura)}"
REPO_URL=${REPO_URL:-}                       # cloned on workers that lack REPO_DIR
REPO_DIR=${REPO_DIR:-aura_jax}               # relative to each worker's home
CONFIG=${CONFIG:-configs/aura_qwen2.5-7b_whisper-large-v3.yaml}
JAX_EXTRA=${JAX_EXTRA:-tpu}                  # jax[tpu] of the pinned jax version
JAX_VERSION=${JAX_VERSION:-0.10.2}
PROJECT_FLAG=${PROJECT:+--project=$PROJECT}
CACHE_DIR=${CACHE_DIR:-~/.cache/aura_jax/xla}

overrides=(distributed.enabled=true "run_dir=$RUN_DIR" "compilation_cache_dir=$CACHE_DIR")
[ -n "${LLM:-}" ] && overrides+=("model.llm=$LLM")
[ -n "${TEACHER:-}" ] && overrides+=("model.teacher=$TEACHER")
[ -n "${SPEECH:-}" ] && overrides+=("data.speech.0.path=$SPEECH")
[ -n "${TEXT:-}" ] && overrides+=("data.text.0.path=$TEXT")
overrides+=("$@")
quoted=$(printf ' %q' "${overrides[@]}")

setup="set -e; if [ ! -d $REPO_DIR ]; then git clone ${REPO_URL:?set REPO_URL or put the repo in ~/$REPO_DIR} $REPO_DIR; fi; \
cd $REPO_DIR && bash scripts/setup_env.sh && .venv/bin/python -m pip install -q 'jax[$JAX_EXTRA]==$JAX_VERSION'"
train="cd $REPO_DIR && .venv/bin/aura-jax train $CONFIG$quoted"

# shellcheck disable=SC2086
gcloud compute tpus tpu-vm ssh "$TPU_NAME" --zone "$ZONE" $PROJECT_FLAG --worker=all --command "$setup"
# shellcheck disable=SC2086
gcloud compute tpus tpu-vm ssh "$TPU_NAME" --zone "$ZONE" $PROJECT_FLAG --worker=all --command "$train"
