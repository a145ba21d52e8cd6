# usage: .venv/bin/python scripts/long_run_plot.py runs/long/run_seed0  (after scripts/long_run_baselines.py)
#        BASELINES=runs/demo_timed/run_hears/eval/step150 DEMO=runs/big .venv/bin/python scripts/long_run_plot.py \
#          runs/long/hears_9600_seed0   (Whisper's transcripts from any eval of the same test clips)
"""docs/figures/long_run_learning_curve.png and long_run_loss.png from the long run's curve.jsonl / metrics.jsonl
(long_run_RUN_learning_curve.png and long_run_RUN_loss.png for a run other than run_seed0)."""
import os
import sys
from pathlib import Path
from aura_jax.demo_real import RealStages, GROUP_NAMES
from aura_jax.evaluate.curve import plot_wer_curves, read_curve, series
from aura_jax.training.metrics import plot_losses

run = Path(sys.argv[1])
class Baselines(RealStages):  # Whisper's transcripts of the test clips: scripts/long_run_baselines.py
    def eval_dir(self, run_dir):
        return Path(os.environ.get("BASELINES", "runs/long/eval/baselines"))

st = Baselines(os.environ.get("DEMO", "runs/demo"), "full", 0)
tag = "long_run" if run.name == "run_seed0" else f"long_run_{run.name}"
curve = read_curve(run)
teacher = {g: st.teacher_curve_wer(run, 12, g) for g in st.groups()}
Path("docs/figures").mkdir(parents=True, exist_ok=True)
print(plot_wer_curves({f"AuRA, {GROUP_NAMES[g]}": [series(curve, f"{g}_wer")] for g in st.groups()},
                      f"docs/figures/{tag}_learning_curve.png",
                      {f"Whisper tiny.en, {GROUP_NAMES[g]}: {w:.1f} %": w for g, w in teacher.items() if w is not None},
                      title="The long run: AuRA's WER (12 clips per voice group)", ymax=150))
print(plot_losses(run / "metrics.jsonl", f"docs/figures/{tag}_loss.png"))
for r in curve:
    print(r["step"], {k: round(v, 1) for k, v in r.items() if k.endswith("_wer")})
