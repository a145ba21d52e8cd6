"""`aura-jax demo`: the whole paper in miniature, on synthesized speech, on a laptop CPU.

    corpus  → espeak-ng voices speak grammar sentences and fact questions; some voices held out
    lm      → a tiny Qwen2-shaped LM learns the corpus language and the fact table (full training)
    teacher → a tiny Whisper learns ASR on the training voices
    train   → AuRA: frozen LM + LoRA on its first K layers, CE + layer-wise distillation from the teacher
    eval    → held-out voices: WER (AuRA, cascade) and spoken QA (AuRA, cascade, gold transcript)
    export  → merged Hugging Face directory; one PyTorch inference on a held-out clip
    report  → OUT/report: loss curves (PNG), tables (Markdown), the commands to reproduce

Every stage is cached under OUT: a second run redoes nothing that is done.
`aura-jax repro-mini` trains the paper's loss ablations (Tables 3 and 4) on the
same corpus and pieces over three seeds.
"""

from __future__ import annotations

import dataclasses
import json
import re
import time
from pathlib import Path

REPO_CONFIGS = Path(__file__).resolve().parents[1] / "configs"
QA_INSTRUCTION = "Give a simple one sentence answer."


@dataclasses.dataclass(frozen=True)
class Size:
    """How big each stage is: `full` (the ≤15-minute demo) or `quick` (CI, ≤3 minutes)."""

    corpus: dict
    pieces: str  # size preset of pretrain_lm / pretrain_whisper
    train_steps: int
    repro_steps: int  # AuRA steps per repro-mini run (15 runs)
    eval_limit: int | None  # spoken-QA items (None: all)


SIZES = {
    "full": Size(corpus=dict(num_train_sentences=2000, num_test_sentences=120, num_qa=80), pieces="default",
                 train_steps=1000, repro_steps=300, eval_limit=None),
    "quick": Size(corpus=dict(num_train_sentences=160, num_test_sentences=24, num_qa=8), pieces="quick",
                  train_steps=40, repro_steps=10, eval_limit=None),
}


class Stages:
    """Paths and cached stages of one demo directory."""

    def __init__(self, out: str | Path, size: str = "full", seed: int = 0, log=print):
        self.out, self.size, self.seed, self.log = Path(out), SIZES[size], seed, log
        self.size_name = size
        self.corpus_dir = self.out / "corpus"
        self.lm_dir, self.whisper_dir = self.out / "models" / "lm", self.out / "models" / "whisper"
        self.times: dict[str, float] = {}

    def _timed(self, name: str, fn):
        t0 = time.perf_counter()
        self.log(f"== {name}")
        result = fn()
        self.times[name] = time.perf_counter() - t0
        return result

    def corpus(self) -> dict:
        from aura_jax.corpus.make import make_corpus

        return self._timed("corpus", lambda: make_corpus(self.corpus_dir, seed=self.seed, **self.size.corpus))

    def pieces(self) -> tuple[dict, dict]:
        from aura_jax.corpus.pretrain_lm import pretrain_lm
        from aura_jax.corpus.pretrain_whisper import pretrain_whisper

        lm = self._timed("lm", lambda: pretrain_lm(self.corpus_dir, self.lm_dir, size=self.size.pieces,
                                                   seed=self.seed))
        whisper = self._timed("teacher", lambda: pretrain_whisper(self.corpus_dir, self.whisper_dir,
                                                                  size=self.size.pieces, seed=self.seed))
        return lm, whisper

    def config(self, run_dir: Path, seed: int, overrides: list[str] = ()):
        from aura_jax.config import load_config

        return load_config(REPO_CONFIGS / "demo.yaml", [
            f"model.llm={self.lm_dir}", f"model.teacher={self.whisper_dir}",
            f"data.speech.0.path={self.corpus_dir / 'asr_train'}", f"data.text.0.path={self.corpus_dir / 'text_qa.jsonl'}",
            f"run_dir={run_dir}", f"steps={self.size.train_steps}", f"seed={seed}", *overrides])

    def train(self, run_dir: Path, seed: int, overrides: list[str] = ()) -> Path:
        from aura_jax.checkpoint import Checkpointer
        from aura_jax.train import train

        config = self.config(run_dir, seed, overrides)
        ckpt = Checkpointer(run_dir / "checkpoints", async_save=False)
        done = (ckpt.latest_step() or 0) >= config.steps
        ckpt.close()
        if not done:  # a finished run is not rebuilt; an interrupted one resumes
            train(config)
        return run_dir

    def evaluate(self, run_dir: Path, task: str, system: str) -> dict:
        from aura_jax.evaluate.harness import run_eval

        out = run_dir / "eval" / f"{task}_{system}"
        if (out / "summary.json").exists():
            return json.loads((out / "summary.json").read_text())
        data = self.corpus_dir / ("asr_test" if task == "asr" else "sdqa")
        return run_eval(str(run_dir), task, str(data), system=system, batch_size=8, out=str(out),
                        whisper=str(self.whisper_dir), max_new_tokens=24, progress=True,
                        limit=self.size.eval_limit if task == "sdqa" else None)


# ---------------------------------------------------------------------------
# demo
# ---------------------------------------------------------------------------
def run_demo(out: str | Path = "runs/demo", *, quick: bool = False, seed: int = 0) -> dict:
    start = time.perf_counter()
    st = Stages(out, "quick" if quick else "full", seed)
    corpus = st.corpus()
    lm, whisper = st.pieces()
    run = st._timed("train", lambda: st.train(st.out / "run", seed))
    results = st._timed("eval", lambda: {(task, system): st.evaluate(run, task, system)
                                         for task, systems in (("asr", ("aura", "cascade")),
                                                               ("sdqa", ("aura", "cascade", "gold")))
                                         for system in systems})
    heard = st._timed("export", lambda: export_and_listen(st, run))
    st.times["total"] = time.perf_counter() - start
    report = write_report(st, corpus, lm, whisper, results, heard, quick)
    print(report.read_text())
    print(f"report: {report.parent}")
    return {"results": results, "heard": heard, "times": st.times, "report": str(report)}


def export_and_listen(st: Stages, run: Path) -> dict:
    """Merged export (float32: the parity check needs it), then one held-out clip through PyTorch."""
    from aura_jax.evaluate.datasets import read_sdqa
    from aura_jax.export import export
    from aura_jax.torch import AuraSpeechLM

    target = st.out / "export"
    if not (target / "aura_config.json").exists():
        export(run, st.lm_dir, target, format="merged", dtype="float32")
    item = read_sdqa(st.corpus_dir / "sdqa")[0]
    lm = AuraSpeechLM.from_pretrained(target)
    wave = item.audio.load()
    config = json.loads((target / "aura_config.json").read_text())
    heard = lm.generate(wave, config["prompt"]["asr_instruction"], max_new_tokens=24).strip()
    answer = lm.generate(wave, QA_INSTRUCTION, max_new_tokens=24).strip()
    print(f"held-out voice {item.dialect}: asked {item.question!r}\n  heard  : {heard!r}\n  answer : {answer!r}"
          f"  (reference {item.references})")
    return {"voice": item.dialect, "question": item.question, "heard": heard, "answer": answer,
            "references": item.references}


def _qa_row(name: str, summary: dict, metric: str = "contains") -> tuple[list[str], str]:
    per = summary["table"][metric]
    return list(per), f"| {name} | " + " | ".join(f"{v:.1f}" for v in per.values()) + \
        f" | {summary['latency_s_per_sample']:.3f} |"


def write_report(st: Stages, corpus, lm, whisper, results, heard, quick: bool) -> Path:
    from aura_jax.metrics import plot_losses

    report = st.out / "report"
    report.mkdir(parents=True, exist_ok=True)
    plot_losses(st.out / "run" / "metrics.jsonl", report / "aura_loss.png")
    plot_pieces(report / "pretraining_loss.png", {"tiny LM (next token)": lm, "tiny Whisper (CE + CTC)": whisper})
    asr = [f"| {s} | {results[('asr', s)]['table']['wer']['all']:.1f} | {results[('asr', s)]['table']['cer']['all']:.1f}"
           f" | {results[('asr', s)]['latency_s_per_sample']:.3f} |" for s in ("aura", "cascade")]
    columns, _ = _qa_row("", results[("sdqa", "aura")])
    qa = [_qa_row(name, results[("sdqa", s)])[1] for s, name in
          (("aura", "AuRA (hears)"), ("cascade", "cascade (Whisper → LM)"), ("gold", "gold transcript (LM reads)"))]
    lines = [
        f"# aura-jax demo{' --quick' if quick else ''}", "",
        f"Corpus: {corpus.get('counts', corpus)}; training voices {list(corpus.get('voices', []))}, "
        f"held out {list(corpus.get('heldout_voices', []))}.",
        f"Tiny LM: {_brief(lm)}. Tiny Whisper: {_brief(whisper)}.", "",
        "## ASR on held-out voices (%, lower is better)", "",
        "| system | WER | CER | latency s/sample |", "|---|---|---|---|", *asr, "",
        "## Spoken QA on held-out voices (answer contains the reference, %)", "",
        "| system | " + " | ".join(c.upper() for c in columns) + " | latency s/sample |",
        "|---" * (len(columns) + 2) + "|", *qa, "",
        "## One held-out clip through the exported PyTorch model", "",
        f"voice {heard['voice']}, question {heard['question']!r}: heard {heard['heard']!r}, "
        f"answered {heard['answer']!r} (reference {heard['references']}).", "",
        "## Wall time (s)", "", "| " + " | ".join(st.times) + " |", "|---" * len(st.times) + "|",
        "| " + " | ".join(f"{v:.0f}" for v in st.times.values()) + " |", "",
        "Cached stages take ~0 s on a second run. Loss curves: aura_loss.png, pretraining_loss.png.", "",
        "## Reproduce", "", f"    aura-jax demo --out {st.out}{' --quick' if quick else ''} --seed {st.seed}",
        f"    aura-jax eval {st.out / 'run'} --task sdqa --data {st.corpus_dir / 'sdqa'}",
        f"    aura-jax eval {st.out / 'run'} --task asr --data {st.corpus_dir / 'asr_test'}",
        f"    aura-jax infer {st.out / 'export'} --audio CLIP.wav --prompt {QA_INSTRUCTION!r}", ""]
    path = report / "results.md"
    path.write_text("\n".join(lines))
    return path


def plot_pieces(path: Path, results: dict[str, dict]) -> None:
    """The pretraining loss curves (done.json keeps the mean of every 10 steps)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curves = {name: r["loss_history"] for name, r in results.items() if r.get("loss_history")}
    if not curves:
        return
    fig, axes = plt.subplots(1, len(curves), figsize=(5 * len(curves), 3.5), squeeze=False)
    for ax, (name, losses) in zip(axes[0], curves.items()):
        ax.plot([10 * i for i in range(len(losses))], losses)
        ax.set(title=name, xlabel="step", ylabel="loss", yscale="log")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _brief(result: dict) -> str:
    keys = ("final_loss", "heldout_wer", "train_wer", "gold_qa_accuracy", "wall_s")
    return ", ".join(f"{k}={result[k]:.3g}" for k in keys if isinstance(result.get(k), (int, float))) or "cached"


def add_arguments(p) -> None:
    p.add_argument("--out", default="runs/demo", help="where every stage and the report go (default runs/demo)")
    p.add_argument("--quick", action="store_true", help="a smaller miniature for CI (≤3 minutes)")
    p.add_argument("--seed", type=int, default=0)


def main(args) -> int:
    run_demo(args.out, quick=args.quick, seed=args.seed)
    return 0


# ---------------------------------------------------------------------------
# make-corpus
# ---------------------------------------------------------------------------
def add_corpus_arguments(p) -> None:
    p.add_argument("--out", required=True, help="corpus directory")
    p.add_argument("--quick", action="store_true", help="the --quick demo's sizes")
    p.add_argument("--seed", type=int, default=0)


def corpus_main(args) -> int:
    from aura_jax.corpus.make import make_corpus

    size = SIZES["quick" if args.quick else "full"]
    print(json.dumps(make_corpus(args.out, seed=args.seed, **size.corpus), indent=2))
    return 0


# ---------------------------------------------------------------------------
# repro-mini: Tables 3 and 4 in miniature
# ---------------------------------------------------------------------------
ABLATIONS = {  # name → loss overrides (the paper's Tables 3 and 4)
    "CE only": ["loss.distill_weight=0"],
    "distill only": ["loss.ce_weight=0"],
    "CE + distill (cos + MSE)": [],
    "cosine only": ["loss.lambda_mse=0"],
    "MSE only": ["loss.lambda_cos=0"],
}


def run_repro_mini(out: str | Path = "runs/demo", *, seeds=(0, 1, 2), quick: bool = False,
                   ablations: list[str] | None = None, steps: int | None = None) -> Path:
    import numpy as np

    start = time.perf_counter()
    st = Stages(out, "quick" if quick else "full", 0)
    st.corpus()
    st.pieces()
    scores: dict[str, list[tuple[float, float]]] = {}
    unknown = set(ablations or ()) - set(ABLATIONS)
    if unknown:
        from aura_jax.config import ConfigError

        raise ConfigError(f"--ablations {sorted(unknown)}: choose from {list(ABLATIONS)}")
    for name in ablations or ABLATIONS:
        overrides = ABLATIONS[name] + [f"steps={steps or st.size.repro_steps}"]
        for seed in seeds:
            slug = "_".join(re.findall(r"[a-z]+", name.lower()))
            run = st.train(st.out / "repro_mini" / f"{slug}_seed{seed}", seed, overrides)
            wer = st.evaluate(run, "asr", "aura")["table"]["wer"]["all"]
            qa = st.evaluate(run, "sdqa", "aura")["table"]["contains"]["AVG"]
            scores.setdefault(name, []).append((wer, qa))
    lines = [f"# repro-mini: the paper's loss ablations in miniature ({len(seeds)} seeds, mean ± std)", "",
             "| training loss | held-out-voice WER (%) ↓ | spoken QA, held-out voices (%) ↑ |", "|---|---|---|"]
    for name, vals in scores.items():
        w, q = np.array(vals).T
        lines.append(f"| {name} | {w.mean():.1f} ± {w.std():.1f} | {q.mean():.1f} ± {q.std():.1f} |")
    lines += ["", f"Wall time {time.perf_counter() - start:.0f} s (corpus and pieces cached from `aura-jax demo`).",
              "Rows 'CE + distill (cos + MSE)' is both Table 3's CE+distill and Table 4's cos+MSE."]
    path = st.out / "report" / "repro_mini.md"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    print(path.read_text())
    return path


def add_repro_arguments(p) -> None:
    p.add_argument("--out", default="runs/demo", help="the demo directory whose corpus and pieces it reuses")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--quick", action="store_true")
    p.add_argument("--ablations", nargs="+", default=None, help=f"a subset of {list(ABLATIONS)}")
    p.add_argument("--steps", type=int, default=None, help="AuRA training steps per run (default: the size's)")


def repro_main(args) -> int:
    run_repro_mini(args.out, seeds=tuple(args.seeds), quick=args.quick, ablations=args.ablations, steps=args.steps)
    return 0
