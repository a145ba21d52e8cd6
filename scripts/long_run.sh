#!/usr/bin/env bash
# Issue 33's long run: the real pair (SmolLM2-135M-Instruct hears from Whisper tiny.en) on the demo's
# corpus, the paper's loss with the teacher on the clip's bucket and bf16 dots (3.3x the step), curves every 100 steps.
# Running it again resumes from the latest checkpoint in runs/long/run_seed$SEED (nohup it; log in runs/long/train.log).
#   STEPS=1200 SEED=0 bash scripts/long_run.sh
set -euo pipefail
cd "$(dirname "$0")/.."
C=runs/demo/corpus
SEED=${SEED:-0}
exec .venv/bin/aura-jax train configs/demo_real.yaml \
  model.llm=.cache/models/smollm2-135m-instruct model.teacher=.cache/models/whisper-tiny.en \
  data.speech.0.path=$C/asr_train data.text.0.path=$C/text_qa.jsonl \
  run_dir=runs/long/run_seed$SEED seed=$SEED steps=${STEPS:-2500} audio.teacher_frames=bucket model.dot_dtype=bfloat16 \
  checkpoint_every=50 curve.every=100 curve.limit=12 curve.batch_size=8 curve.patience=0 \
  "curve.sets={trained: $C/asr_test_trained, heldout_voices: $C/asr_test_heldout_voices, heldout_engine: $C/asr_test_heldout_engine}" \
  "$@"
