#!/usr/bin/env bash
# The text-teacher comparison (docs/DEMO.md), one seed: hears (baseline) then hears + text teacher, same steps/corpus/seed, on core $2
# usage: bash scripts/text_teacher_compare.sh SEED CORE   (STEPS=250 by default; runs/big/corpus: aura-jax demo --out runs/big --sentences 9600, or long_run.sh's recipe)
cd "$(dirname "$0")/.."
SEED=$1; CORE=$2; STEPS=${STEPS:-250}
for V in hears tt; do
  EXTRA=(); [ $V = tt ] && EXTRA=(loss.text_teacher_weight=1)
  CORPUS=runs/big/corpus RECIPE=hears RUN=cmp_tt/${V}_seed$SEED SEED=$SEED STEPS=$STEPS taskset -c $CORE \
    bash scripts/long_run.sh checkpoint_every=$STEPS curve.every=125 "${EXTRA[@]}" > runs/long/cmp_tt_${V}_seed$SEED.log 2>&1
done
DEMO=runs/big taskset -c $CORE .venv/bin/python scripts/compare_runs.py runs/long/cmp_tt_seed$SEED.json \
  runs/long/cmp_tt/hears_seed$SEED runs/long/cmp_tt/tt_seed$SEED > runs/long/cmp_tt_eval_seed$SEED.log 2>&1
