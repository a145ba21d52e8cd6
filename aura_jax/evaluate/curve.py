"""Learning curves: the student's WER on fixed ASR subsets while it trains.

Every `curve.every` steps the student (as it is at that step) transcribes the first `curve.limit`
usable clips of each set in `curve.sets`, greedily and offline, exactly as `aura-jax eval --task asr`
does (`harness.aura_answers`: same prompt, same padding to the training bucket, same normaliser
and WER). Each evaluation is one line of run_dir/curve.jsonl and a TensorBoard scalar
`curve/<set>_wer`; the report plots them. With `curve.patience` > 0 training stops on a plateau:
when the first set's WER has not improved by `curve.min_delta` points over that many evaluations.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from aura_jax.config import Config, ConfigError


class LearningCurve:
    def __init__(self, config: Config, tokenizer, log=print):
        from aura_jax.evaluate.harness import read_candidates, resolve_window, usable

        c = config.curve
        if c.every < 0 or c.limit < 1 or c.batch_size < 1 or c.max_new_tokens < 1 or c.patience < 0:
            raise ConfigError(f"curve: every={c.every} must be ≥ 0, and limit={c.limit}, batch_size={c.batch_size}, "
                              f"max_new_tokens={c.max_new_tokens} ≥ 1, patience={c.patience} ≥ 0")
        if not c.sets:
            raise ConfigError(f"curve.every={c.every} but curve.sets is empty: name at least one ASR set "
                              f"(curve.sets={{heldout: /path/to/asr_set}})")
        self.config, self.tok, self.log = config, tokenizer, log
        self.path = Path(config.run_dir) / "curve.jsonl"
        self.sets: dict[str, tuple[list, list[str]]] = {}
        window = resolve_window(config)
        for name, data in c.sets.items():
            candidates, read = read_candidates("asr", data)
            skipped = []
            picked = list(usable(candidates, window, skipped.append, {"rows_read": 0}, c.limit))
            if not picked:
                raise ConfigError(f"curve.sets.{name}={data}: no usable clip in {read}")
            self.sets[name] = ([w for _, w in picked], [it.references[0] for it, _ in picked])
        self.history: list[dict] = []

    @property
    def first(self) -> str:
        return next(iter(self.sets))

    def resume(self, step: int) -> None:
        """Keep the evaluations of steps up to `step` (the checkpoint resumed from); later ones are redone."""
        if self.path.exists():
            rows = [json.loads(line) for line in self.path.read_text().splitlines() if line.strip()]
            self.history = [r for r in rows if r["step"] <= step]
            self.path.write_text("".join(json.dumps(r) + "\n" for r in self.history))

    def due(self, step: int, total: int) -> bool:
        every = self.config.curve.every
        return every > 0 and (step % every == 0 or step == total) and not any(r["step"] == step
                                                                             for r in self.history)

    def evaluate(self, step: int, model) -> dict:
        """WER (%) of `model` on every set; appended to curve.jsonl and returned."""
        from aura_jax.evaluate.harness import aura_answers
        from aura_jax.evaluate.metrics import asr_scores

        c, start = self.config.curve, time.perf_counter()
        record = {"step": int(step)}
        for name, (waves, refs) in self.sets.items():
            preds = []
            for s in range(0, len(waves), c.batch_size):
                chunk = waves[s:s + c.batch_size]
                chunk = chunk + [chunk[-1]] * (c.batch_size - len(chunk))  # one shape: one compilation
                preds += aura_answers(model, self.tok, self.config, self.config.prompt.asr_instruction, chunk,
                                      c.max_new_tokens)[:min(c.batch_size, len(waves) - s)]
            record[f"{name}_wer"] = 100 * asr_scores(preds, refs)["wer"]
            record[f"{name}_example"] = {"reference": refs[0], "prediction": preds[0]}
        record["seconds"] = round(time.perf_counter() - start, 2)
        self.history.append(record)
        with open(self.path, "a") as f:
            f.write(json.dumps(record) + "\n")
        self.log(f"curve at step {step}: " + ", ".join(f"{n} WER {record[f'{n}_wer']:.1f} %" for n in self.sets)
                 + f" ({record['seconds']:.1f} s)")
        return record

    def plateaued(self) -> bool:
        c = self.config.curve
        return plateau([r[f"{self.first}_wer"] for r in self.history], c.patience, c.min_delta)


def plateau(wers: list[float], patience: int, min_delta: float) -> bool:
    """True when the last `patience` values improved on none of the earlier ones by `min_delta` (0: never)."""
    if patience == 0 or len(wers) <= patience:
        return False
    return min(wers[-patience:]) > min(wers[:-patience]) - min_delta


def stopped_on_plateau(run_dir: str | Path, config: Config) -> bool:
    """Whether a run's curve.jsonl says it stopped on a plateau (the demo then counts it as done)."""
    rows = read_curve(run_dir)
    if not rows or not config.curve.sets:
        return False
    first = next(iter(config.curve.sets))
    return plateau([r[f"{first}_wer"] for r in rows if f"{first}_wer" in r], config.curve.patience,
                   config.curve.min_delta)


def read_curve(run_dir: str | Path) -> list[dict]:
    """The evaluations in run_dir/curve.jsonl (empty if the run had no curve)."""
    path = Path(run_dir) / "curve.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []


def series(rows: list[dict], key: str) -> list[tuple[int, float]]:
    """(step, value) of one curve.jsonl field, e.g. series(read_curve(run), "heldout_wer")."""
    return [(r["step"], r[key]) for r in rows if key in r]


def plot_wer_curves(groups: dict[str, list[list[tuple[int, float]]]], out_png: str | Path,
                    lines: dict[str, float] | None = None, title: str = "", ymax: float | None = None) -> Path | None:
    """WER (%) against step: one line per group (the mean over its runs, with the runs' min–max band
    when there are several, e.g. seeds) and a dashed horizontal line per `lines` entry (e.g. the teacher).
    A group is a list of runs; a run is its (step, WER) points (`series`). `ymax` cuts the axis (a
    group whose last mean is above it says so in its label)."""
    import matplotlib
    import numpy as np

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    drawn = False
    for label, runs in groups.items():
        runs = [dict(run) for run in runs if run]
        steps = sorted(set.intersection(*[set(run) for run in runs])) if runs else []
        if not steps:
            continue
        values = np.array([[run[s] for s in steps] for run in runs])
        off = f", off the chart: {values.mean(0)[-1]:.0f} % at the end" if ymax and values.mean(0)[-1] > ymax else ""
        (line,) = ax.plot(steps, values.mean(0), marker="o", markersize=3,
                          label=label + (f" (mean of {len(runs)}, band: min–max{off})" if len(runs) > 1 else
                                         (f" ({off[2:]})" if off else "")))
        if len(runs) > 1:
            ax.fill_between(steps, values.min(0), values.max(0), color=line.get_color(), alpha=0.2)
        drawn = True
    if not drawn:
        plt.close(fig)
        return None
    for i, (label, value) in enumerate((lines or {}).items()):
        ax.axhline(value, linestyle="--" if i == 0 else ":", color="black", linewidth=1, label=label)
    ax.set(xlabel="AuRA training step", ylabel="WER (%)", title=title)
    ax.set_ylim(bottom=0, top=ymax)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out_png, dpi=110)
    plt.close(fig)
    return Path(out_png)
