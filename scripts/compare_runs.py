# usage: DEMO=runs/big .venv/bin/python scripts/compare_runs.py OUT.json RUN [RUN ...]  (from the repository root)
"""A recipe comparison's measures for each run's latest checkpoint, cheaper than the demo's evaluation:
the audio's worth per voice group (teacher-forced CE with another clip's audio − with its own, 12 clips)
and AuRA's WER on every held-out-voice and held-out-engine test clip (30 each). DEMO/corpus holds the
test sets (default runs/demo). Used for the text-teacher comparison in docs/DEMO.md."""
import json, os, sys, time
from pathlib import Path
from aura_jax.demo_real import RealStages
from aura_jax.evaluate.audio_use import audio_use
from aura_jax.training.distributed import enable_compilation_cache

enable_compilation_cache("~/.cache/aura_jax/xla")
st = RealStages(os.environ.get("DEMO", "runs/demo"), "full", 0)
out = {}
for run in map(Path, sys.argv[2:]):
    t = time.time()
    r = {"audio_use": {g: audio_use(str(run), str(st.corpus_dir / f"asr_test_{g}"), batches=3, batch_size=4)["gap"]
                       for g in st.groups()},
         "wer": {g: st.evaluate(run, "asr", "aura", g)["table"]["wer"]["all"] for g in ("heldout_voices", "heldout_engine")}}
    r["seconds"] = round(time.time() - t, 1)
    out[str(run)] = r
    print(run, json.dumps(r), flush=True)
Path(sys.argv[1]).write_text(json.dumps(out, indent=1))
