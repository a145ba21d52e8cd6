"""What the user sees of a run: metrics.jsonl, TensorBoard events, a loss-curve
PNG. Only process 0 writes (the writer is a no-op elsewhere)."""

from __future__ import annotations

import json
from pathlib import Path

CURVES = ("loss", "ce", "distill", "ctc", "text_kl")  # plotted when present (ctc, text_kl: opt-in terms)


class MetricsWriter:
    def __init__(self, run_dir: str | Path, enabled: bool = True):
        self.run_dir, self.enabled = Path(run_dir), enabled
        self._jsonl = self._tb = None
        if enabled:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            self._jsonl = open(self.run_dir / "metrics.jsonl", "a", buffering=1)
            from tensorboardX import SummaryWriter

            self._tb = SummaryWriter(str(self.run_dir / "tensorboard"))

    def write(self, step: int, metrics: dict) -> None:
        if not self.enabled:
            return
        record = {"step": int(step), **{k: _plain(v) for k, v in metrics.items()}}
        self._jsonl.write(json.dumps(record) + "\n")
        for key, value in record.items():
            if key != "step" and isinstance(value, (int, float)):
                self._tb.add_scalar(f"train/{key}", value, step)

    def scalars(self, step: int, values: dict) -> None:
        """TensorBoard scalars under their own names (e.g. curve/heldout_wer); not in metrics.jsonl."""
        if self.enabled:
            for key, value in values.items():
                self._tb.add_scalar(key, float(value), step)

    def close(self) -> None:
        if not self.enabled:
            return
        self._jsonl.close()
        self._tb.close()
        plot_losses(self.run_dir / "metrics.jsonl", self.run_dir / "loss_curve.png")


def _plain(value):
    try:
        value = value.item()
    except AttributeError:
        pass
    return value


def read_metrics(path: str | Path) -> list[dict]:
    """metrics.jsonl → records; a resumed run's re-done steps replace the earlier ones."""
    by_step: dict[int, dict] = {}
    for line in Path(path).read_text().splitlines():
        if line.strip():
            record = json.loads(line)
            by_step[record["step"]] = record
    return [by_step[s] for s in sorted(by_step)]


def plot_losses(metrics_path: str | Path, out_png: str | Path) -> Path | None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    records = read_metrics(metrics_path)
    if not records:
        return None
    fig, ax = plt.subplots(figsize=(7, 4))
    steps = [r["step"] for r in records]
    for key in CURVES:
        if any(key in r for r in records):
            ax.plot(steps, [r.get(key, float("nan")) for r in records], label=key)
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_yscale("log")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(out_png, dpi=110)
    plt.close(fig)
    return Path(out_png)
