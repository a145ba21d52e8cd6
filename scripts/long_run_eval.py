# usage: .venv/bin/python scripts/long_run_eval.py runs/long/run_seed0  (from the repository root)
#        DEMO=runs/big .venv/bin/python scripts/long_run_eval.py runs/long/hears_9600_seed0  (its corpus: DEMO/corpus)
"""Evaluate the long run's latest checkpoint as the demo does: AuRA's ASR per voice group, spoken QA (AuRA
hears / AuRA reads the text; `aura,text,cascade,gold` as the second argument for all), the audio's worth,
and WER and audio worth on 30 training clips (memorised or heard?). Writes runs/long/eval/summary.json for
runs/long/run_seed0 (the first long run), runs/long/eval/RUN.json for any other run RUN."""
import json, os, sys, time
from pathlib import Path
from aura_jax.demo_real import RealStages, SYSTEMS, group_qa, latest_step
from aura_jax.training.distributed import enable_compilation_cache

enable_compilation_cache("~/.cache/aura_jax/xla")
run = Path(sys.argv[1]); systems = sys.argv[2].split(",") if len(sys.argv) > 2 else ["aura", "text"]
st = RealStages(os.environ.get("DEMO", "runs/demo"), "full", 0)
groups = st.groups()
out, times = {"step": latest_step(run)}, {}
t = time.time(); out["audio_use"] = st.audio_use(run); times["audio_use"] = time.time() - t
for s in ("aura", "cascade"):
    if s in systems:
        t = time.time()
        out[f"asr_{s}"] = {g: st.evaluate(run, "asr", s, g)["table"]["wer"]["all"] for g in groups}
        times[f"asr_{s}"] = time.time() - t
for s in systems:
    t = time.time(); out[f"sdqa_{s}"] = group_qa(st.evaluate(run, "sdqa", s), groups); times[f"sdqa_{s}"] = time.time() - t
# memorised or heard? the same measures on clips it trained on (the first 30 training clips)
from aura_jax.evaluate.audio_use import audio_use
from aura_jax.evaluate.harness import run_eval
t = time.time()
out["audio_use_train"] = audio_use(str(run), str(st.corpus_dir / "asr_train"), batches=3, batch_size=4)
tr = run_eval(str(run), "asr", str(st.corpus_dir / "asr_train"), system="aura", batch_size=8, limit=30,
              out=str(st.eval_dir(run) / "asr_aura_train30"), max_new_tokens=32, progress=False)
out["asr_aura_train30"] = tr["table"]["wer"]["all"]; times["train30"] = time.time() - t
out["times_s"] = times
Path("runs/long/eval").mkdir(parents=True, exist_ok=True)
name = "summary" if run.name == "run_seed0" else run.name
Path(f"runs/long/eval/{name}.json").write_text(json.dumps(out, indent=1))
print(json.dumps(out, indent=1))
