# usage: .venv/bin/python scripts/long_run_baselines.py  (from the repository root)
"""Cascade (Whisper tiny.en → SmolLM2) and gold on the corpus's test sets: independent of AuRA's weights,
so they run while the long run trains. Writes runs/long/eval/baselines/summary.json."""
import os
import json, time
from pathlib import Path
from aura_jax.demo_real import RealStages, group_qa
from aura_jax.training.distributed import enable_compilation_cache

enable_compilation_cache("~/.cache/aura_jax/xla")
OUT = Path("runs/long/eval/baselines")

class Fixed(RealStages):
    def eval_dir(self, run_dir):
        return OUT

st = Fixed(os.environ.get("DEMO", "runs/demo"), "full", 0)
run = Path("runs/long/run_seed0")
groups = st.groups()
out, times = {}, {}
t = time.time(); out["asr_cascade"] = {g: st.evaluate(run, "asr", "cascade", g)["table"]["wer"]["all"] for g in groups}; times["asr_cascade"] = time.time() - t
for s in ("cascade", "gold"):
    t = time.time(); out[f"sdqa_{s}"] = group_qa(st.evaluate(run, "sdqa", s), groups); times[f"sdqa_{s}"] = time.time() - t
out["times_s"] = times
(OUT / "summary.json").write_text(json.dumps(out, indent=1))
print(json.dumps(out, indent=1))
