#!/usr/bin/env bash
# Issue 33's long run: the real pair (SmolLM2-135M-Instruct hears from Whisper tiny.en) on the demo's
# corpus, the paper's loss with the teacher on the clip's bucket and bf16 dots (3.3x the step), curves every 100 steps.
# Running it again resumes from the latest checkpoint in runs/long/$RUN (nohup it; log in runs/long/train.log).
# RECIPE=hears adds the two changes beyond the paper that issue 33's first long run called for (docs/DEMO.md):
# spoken training questions answered as the LLM answers them read (corpus/spoken.py make_spoken_questions)
# and LoRA at the audio positions only (lora.audio_only), text rows dropped (they train nothing then).
#   STEPS=1200 SEED=0 bash scripts/long_run.sh
#   RECIPE=hears RUN=hears_seed0 bash scripts/long_run.sh
# CORPUS=DIR trains on another corpus of the same test sets, e.g. one with more distinct training sentences:
#   .venv/bin/python -c "from aura_jax.corpus.spoken import make_spoken_corpus as m; \
#     m('runs/big/corpus', '.cache/models/smollm2-135m-instruct', num_train_sentences=9600)"
#   CORPUS=runs/big/corpus RECIPE=hears RUN=hears_9600_seed0 bash scripts/long_run.sh
set -euo pipefail
cd "$(dirname "$0")/.."
C=${CORPUS:-runs/demo/corpus}
SEED=${SEED:-0}
RUN=${RUN:-run_seed$SEED}
EXTRA=()
if [ "${RECIPE:-paper}" = hears ]; then
  .venv/bin/python -c "from aura_jax.corpus.spoken import make_spoken_questions as m; m('$C')"
  EXTRA=(lora.audio_only=true data.speech_fraction=1.0 data.speech.1.type=commonvoice
         data.speech.1.path=$C/spoken_qa_train data.speech.1.answer_column=answer
         "data.speech.1.instruction=Give a simple one sentence answer.")
fi
exec .venv/bin/aura-jax train configs/demo_real.yaml \
  model.llm=.cache/models/smollm2-135m-instruct model.teacher=.cache/models/whisper-tiny.en \
  data.speech.0.path=$C/asr_train data.text.0.path=$C/text_qa.jsonl \
  run_dir=runs/long/$RUN seed=$SEED steps=${STEPS:-2500} audio.teacher_frames=bucket model.dot_dtype=bfloat16 \
  checkpoint_every=50 curve.every=100 curve.limit=12 curve.batch_size=8 curve.patience=0 \
  "curve.sets={trained: $C/asr_test_trained, heldout_voices: $C/asr_test_heldout_voices, heldout_engine: $C/asr_test_heldout_engine}" \
  "${EXTRA[@]}" "$@"
