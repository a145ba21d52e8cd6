"""`aura-jax demo --toy`: the whole paper in miniature, on synthesized speech, on a laptop CPU (the
real pair, SmolLM2 hearing from Whisper tiny.en, is `aura-jax demo`: demo_real.py, built on these stages).

    corpus  → espeak-ng voices speak grammar sentences and fact questions; some voices held out
    lm      → a tiny Qwen2-shaped LM learns the corpus language and the fact table (full training)
    teacher → a tiny Whisper learns ASR on the training voices
    train   → AuRA: frozen LM + LoRA on its first K layers, CE + layer-wise distillation from the teacher
    eval    → held-out voices: WER (AuRA, cascade) and spoken QA (AuRA, cascade, gold transcript)
    export  → merged Hugging Face directory; one PyTorch inference on a held-out clip
    report  → OUT/report: loss curves (PNG), tables (Markdown), the commands to reproduce

Every stage is cached under OUT: a second run redoes nothing that is done.
`run_repro_mini` (`aura-jax repro-mini [--toy]`) trains the paper's loss ablations (Tables 3 and 4)
on a demo's corpus and pieces over three seeds.
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
    """How big each stage is: `full` (the ≤20-minute demo) or `quick` (CI, ≤3 minutes)."""

    corpus: dict
    pieces: str  # size preset of pretrain_lm / pretrain_whisper
    train_steps: int  # the AuRA step budget (training may stop earlier on a plateau of the curve)
    repro_steps: int  # AuRA steps per repro-mini run (15 runs)
    eval_limit: int | None  # spoken-QA items (None: all)
    curve_every: int  # learning-curve evaluation every N steps
    curve_limit: int  # clips per learning-curve set
    patience: int  # plateau: evaluations without a min_delta-point gain (0: run the whole budget)
    instruct_sentences: int  # tiny LM: "transcribe this text" conversations (pretrain_lm)


SIZES = {
    "full": Size(corpus=dict(num_train_sentences=2000, num_test_sentences=120, num_qa=80), pieces="default",
                 train_steps=2000, repro_steps=600, eval_limit=None, curve_every=200, curve_limit=48, patience=0,
                 instruct_sentences=600),
    "quick": Size(corpus=dict(num_train_sentences=160, num_test_sentences=24, num_qa=8), pieces="quick",
                  train_steps=40, repro_steps=10, eval_limit=None, curve_every=20, curve_limit=8, patience=0,
                  instruct_sentences=60),
}
CURVE_SETS = ("heldout", "training")  # held-out voices (asr_test), training voices (asr_train's first clips)


class Stages:
    """Paths and cached stages of one demo directory."""

    def __init__(self, out: str | Path, size: str = "full", seed: int = 0, log=print):
        self.out, self.size, self.seed, self.log = Path(out), SIZES[size], seed, log
        self.size_name = size
        self.corpus_dir = self.out / "corpus"
        self.lm_dir, self.whisper_dir = self.out / "models" / "lm", self.out / "models" / "whisper"
        self.times: dict[str, float] = {}

    @property
    def main_run(self) -> Path:
        """The demo's own training run."""
        return self.out / "run"

    def _timed(self, name: str, fn):
        t0 = time.perf_counter()
        self.log(f"== {name}")
        result = fn()
        self.times[name] = time.perf_counter() - t0
        if self.times[name] > 2.0:  # the stage did its work (a cached one takes ~0 s): keep its time
            path = self.out / "stage_times.json"
            kept = json.loads(path.read_text()) if path.exists() else {}
            path.write_text(json.dumps({**kept, name: round(self.times[name], 1)}, indent=1))
        return result

    def computed_times(self) -> dict[str, float]:
        """Each stage's wall time when it last did its work (not a cache hit), in stage order."""
        path = self.out / "stage_times.json"
        kept = json.loads(path.read_text()) if path.exists() else {}
        return {k: kept[k] for k in self.times if k in kept}

    def corpus(self) -> dict:
        from aura_jax.corpus.make import make_corpus

        return self._timed("corpus", lambda: make_corpus(self.corpus_dir, seed=self.seed, **self.size.corpus))

    def pieces(self) -> tuple[dict, dict]:
        from aura_jax.corpus.pretrain_lm import pretrain_lm
        from aura_jax.corpus.pretrain_whisper import pretrain_whisper

        lm = self._timed("lm", lambda: pretrain_lm(self.corpus_dir, self.lm_dir, size=self.size.pieces,
                                                   seed=self.seed, instruct_sentences=self.size.instruct_sentences))
        whisper = self._timed("teacher", lambda: pretrain_whisper(self.corpus_dir, self.whisper_dir,
                                                                  size=self.size.pieces, seed=self.seed))
        return lm, whisper

    def config(self, run_dir: Path, seed: int, overrides: list[str] = ()):
        from aura_jax.config import load_config

        return load_config(REPO_CONFIGS / "demo.yaml", [
            f"model.llm={self.lm_dir}", f"model.teacher={self.whisper_dir}",
            f"data.speech.0.path={self.corpus_dir / 'asr_train'}", f"data.text.0.path={self.corpus_dir / 'text_qa.jsonl'}",
            f"run_dir={run_dir}", f"steps={self.size.train_steps}", f"seed={seed}",
            f"curve.every={self.size.curve_every}", f"curve.limit={self.size.curve_limit}",
            f"curve.patience={self.size.patience}",
            f"curve.sets={{{CURVE_SETS[0]}: {self.corpus_dir / 'asr_test'}, "
            f"{CURVE_SETS[1]}: {self.corpus_dir / 'asr_train'}}}", *overrides])

    def train(self, run_dir: Path, seed: int, overrides: list[str] = ()) -> Path:
        from aura_jax.evaluate.curve import LearningCurve, stopped_on_plateau
        from aura_jax.training.checkpoint import Checkpointer
        from aura_jax.training.train import train

        config = self.config(run_dir, seed, overrides)
        ckpt = Checkpointer(run_dir / "checkpoints", async_save=False)
        done = (ckpt.latest_step() or 0) >= config.steps
        ckpt.close()
        if not done and not stopped_on_plateau(run_dir, config):  # a finished run is not rebuilt; an
            train(config, curve=LearningCurve)  # interrupted one resumes
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

    def diagnose(self, run_dir: Path) -> dict:
        """What the student does with each spoken question (aura_jax.evaluate.diagnose)."""
        from aura_jax.evaluate.diagnose import diagnose

        return diagnose(run_dir, self.corpus_dir / "sdqa", run_dir / "eval" / "sdqa_aura" / "predictions.jsonl",
                        run_dir / "eval" / "sdqa_diagnosis")

    curve_key = "heldout_wer"  # the learning-curve series repro-mini plots

    @property
    def curve_every(self) -> int:
        return self.size.curve_every

    @property
    def curve_limit(self) -> int:
        return self.size.curve_limit

    @property
    def repro_steps(self) -> int:
        return self.size.repro_steps

    def repro_scores(self, run: Path) -> tuple[float, float]:
        """(held-out WER %, spoken QA %) of one repro-mini run."""
        return (self.evaluate(run, "asr", "aura")["table"]["wer"]["all"],
                self.evaluate(run, "sdqa", "aura")["table"]["contains"]["AVG"])

    def teacher_curve_wer(self, run_dir: Path, n: int) -> float | None:
        """The cascade's (the teacher's) WER % on the clips the held-out learning curve uses: the first
        `n` rows of its held-out ASR evaluation (same reader, same order)."""
        from aura_jax.evaluate.metrics import asr_scores

        path = run_dir / "eval" / "asr_cascade" / "predictions.jsonl"
        if not path.exists():
            return None
        rows = [json.loads(line) for line in path.read_text().splitlines()[:n] if line.strip()]
        return 100 * asr_scores([r["prediction"] for r in rows], [r["references"][0] for r in rows])["wer"]


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
                                                               ("sdqa", ("aura", "cascade", "gold", "text")))
                                         for system in systems})
    diagnosis = st._timed("diagnose", lambda: st.diagnose(run))
    heard = st._timed("export", lambda: export_and_listen(st, run))
    st.times["total"] = time.perf_counter() - start
    report = write_report(st, corpus, lm, whisper, results, heard, quick, diagnosis)
    print(report.read_text())
    print(f"report: {report.parent}")
    return {"results": results, "heard": heard, "times": st.times, "report": str(report)}


def export_and_listen(st: Stages, run: Path) -> dict:
    """Merged export (float32: the parity check needs it), then one held-out clip through PyTorch."""
    from aura_jax.evaluate.datasets import read_sdqa
    from aura_jax.torch import AuraSpeechLM
    from aura_jax.torch.export import export

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


def write_report(st: Stages, corpus, lm, whisper, results, heard, quick: bool, diagnosis: dict) -> Path:
    from aura_jax.evaluate.curve import plot_wer_curves, read_curve, series
    from aura_jax.training.metrics import plot_losses

    report = st.out / "report"
    report.mkdir(parents=True, exist_ok=True)
    run = st.out / "run"
    curve = read_curve(run)
    teacher = st.teacher_curve_wer(run, st.size.curve_limit)
    lines = {f"cascade (tiny Whisper), held-out voices: {teacher:.1f} %": teacher,
             f"1.5 × cascade: {1.5 * teacher:.1f} %": 1.5 * teacher} if teacher is not None else {}
    plot_wer_curves({"AuRA, held-out voices": [series(curve, "heldout_wer")],
                     "AuRA, training voices (clips it trains on)": [series(curve, "training_wer")]},
                    report / "learning_curve.png", lines,
                    title=f"AuRA's WER during training ({st.size.curve_limit} clips per set)")
    plot_losses(run / "metrics.jsonl", report / "aura_loss.png")
    plot_pieces(report / "pretraining_loss.png", {"tiny LM (next token)": lm, "tiny Whisper (CE + CTC)": whisper})
    asr = [f"| {s} | {results[('asr', s)]['table']['wer']['all']:.1f} | {results[('asr', s)]['table']['cer']['all']:.1f}"
           f" | {results[('asr', s)]['latency_s_per_sample']:.3f} |" for s in ("aura", "cascade")]
    columns, _ = _qa_row("", results[("sdqa", "aura")])
    qa = [_qa_row(name, results[("sdqa", s)])[1] for s, name in
          (("aura", "AuRA (hears the question)"), ("cascade", "cascade (Whisper → LM)"),
           ("gold", "gold transcript (base LM reads the question)"),
           ("text", "AuRA reads the text question (LM + LoRA)")) if ("sdqa", s) in results]
    final = curve[-1] if curve else {}
    lines = [
        f"# aura-jax demo{' --quick' if quick else ''}", "",
        "![learning curve](learning_curve.png)", "",
        f"AuRA's held-out-voice WER during training, evaluated every {st.size.curve_every} steps on the first "
        f"{st.size.curve_limit} held-out test clips (and on {st.size.curve_limit} clips of its training voices); "
        "the dashed line is the cascade's tiny Whisper (the teacher) on the same held-out clips."
        + (f" Last point: step {final['step']}, held-out {final['heldout_wer']:.1f} %, training voices "
           f"{final['training_wer']:.1f} %." if final else ""), "",
        f"Corpus: {corpus.get('counts', corpus)}; training voices {list(corpus.get('voices', []))}, "
        f"held out {list(corpus.get('heldout_voices', []))}.",
        f"Tiny LM: {_brief(lm)}. Tiny Whisper: {_brief(whisper)}.", "",
        "## ASR on held-out voices (all test clips; %, lower is better)", "",
        "| system | WER | CER | latency s/sample |", "|---|---|---|---|", *asr, "",
        "## Spoken QA on held-out voices (answer contains the reference, %)", "",
        "| system | " + " | ".join(c.upper() for c in columns) + " | latency s/sample |",
        "|---" * (len(columns) + 2) + "|", *qa, "",
        "## What AuRA does with each spoken question", "", *diagnosis_table(diagnosis), "",
        *hearing_lines(diagnosis.get("hearing")),
        "## One held-out clip through the exported PyTorch model", "",
        f"voice {heard['voice']}, question {heard['question']!r}: heard {heard['heard']!r}, "
        f"answered {heard['answer']!r} (reference {heard['references']}).", "",
        *wall_time_lines(st),
        "Cached stages take ~0 s on a second run. Loss curves: aura_loss.png, pretraining_loss.png.", "",
        "## Reproduce", "", f"    aura-jax demo --out {st.out}{' --quick' if quick else ''} --seed {st.seed}",
        f"    aura-jax eval {st.out / 'run'} --task sdqa --data {st.corpus_dir / 'sdqa'}",
        f"    aura-jax eval {st.out / 'run'} --task sdqa --system text --data {st.corpus_dir / 'sdqa'}",
        f"    aura-jax eval {st.out / 'run'} --task asr --data {st.corpus_dir / 'asr_test'}",
        f"    aura-jax infer {st.out / 'export'} --audio CLIP.wav --prompt {QA_INSTRUCTION!r}", ""]
    path = report / "results.md"
    path.write_text("\n".join(lines))
    return path


def wall_time_lines(st: Stages) -> list[str]:
    """Markdown: each stage's time in this run, and when it last did its work (a cached stage takes ~0 s)."""
    computed = {k: v for k, v in st.computed_times().items() if k != "total"}
    return ["## Wall time (s)", "", "| | " + " | ".join(st.times) + " |", "|---" * (len(st.times) + 1) + "|",
            "| this run | " + " | ".join(f"{v:.0f}" for v in st.times.values()) + " |",
            "| each stage when it last did its work | " + " | ".join(
                f"{computed[k]:.0f}" if k in computed else "–" for k in st.times if k != "total")
            + f" | {sum(computed.values()):.0f} (sum) |", ""]


def diagnosis_table(summary: dict) -> list[str]:
    """Markdown: % of spoken questions per category (aura_jax.evaluate.diagnose), overall and per voice,
    and one example of each."""
    from aura_jax.evaluate.diagnose import CATEGORIES

    if not summary:
        return ["(no diagnosis)"]
    meaning = {"correct": "answers correctly", "transcribes": "writes the question down instead of answering",
               "misheard": "answers the question it heard, heard wrong",
               "prior": "gives its answer to silence (not from the audio)", "wrong": "another wrong answer"}
    voices = list(summary["by_dialect"])
    rows = ["| what AuRA does | all | " + " | ".join(v.upper() for v in voices) + " | example |",
            "|---" * (len(voices) + 3) + "|"]
    for c in CATEGORIES:
        ex = (summary["examples"].get(c) or [None])[0]
        example = (f"asked {ex['question']!r}, answered {ex['prediction']!r}" + (
            f" (heard {ex['heard']!r})" if c == "misheard" else "")) if ex else ""
        rows.append(f"| {meaning[c]} | {summary['all'][c]['pct']:.1f} | "
                    + " | ".join(f"{summary['by_dialect'][v][c]['pct']:.1f}" for v in voices) + f" | {example} |")
    rows += ["", f"{summary['n']} spoken questions; the answer to silence is {summary.get('silence_answer', '')!r}. "
             "Categories are checked in this order; 'writes the question down' means within 50 % WER of the "
             "question or of AuRA's own transcript of the clip."]
    return rows


def hearing_lines(h: dict | None) -> list[str]:
    """Hearing apart from answering (aura_jax.evaluate.diagnose.hearing), as a paragraph."""
    if not h:
        return []
    return [f"Hearing apart from answering: AuRA's own transcripts of the spoken questions have "
            f"{h['question_wer']:.1f} % WER. It transcribes {h['heard_exactly']} of them exactly; of those it "
            f"answers {h['heard_exactly_answered_correctly']} correctly from the audio, while the base LM reading "
            f"those same transcripts answers {h['llm_answers_its_exact_transcripts_correctly']}. Over all questions "
            f"the base LM answers {h['llm_answers_its_transcripts_correctly']} correctly from AuRA's transcripts.",
            ""]


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


PAPER = "CE + distill (cos + MSE)"


def run_repro_mini(out: str | Path = "runs/demo", *, seeds=(0, 1, 2), quick: bool = False,
                   ablations: list[str] | None = None, steps: int | None = None, stages: Stages | None = None,
                   variants: dict[str, list[str]] | None = None, overrides: list[str] = ()) -> Path:
    """Each loss variant × each seed trained to the same step budget from the same frozen pieces, with its
    held-out learning curve; one plot of the curves (mean and min–max over seeds), a final table (held-out
    WER on all test clips, spoken QA) and the paper's orderings checked against the seed spread.

    `variants` (name → overrides) are recipes beyond the paper's, each judged against the paper's
    recipe at the same budget; with variants and no `ablations` the paper's recipe is their only
    companion. `overrides` apply to every run (e.g. the teacher's window or the dot dtype)."""
    import numpy as np

    from aura_jax.evaluate.curve import plot_wer_curves, read_curve, series

    start = time.perf_counter()
    st = stages or Stages(out, "quick" if quick else "full", 0)  # the real pair's: demo_real.RealStages
    st.pieces()
    st.corpus()
    from aura_jax.config import ConfigError

    unknown = set(ablations or ()) - set(ABLATIONS)
    if unknown:
        raise ConfigError(f"--ablations {sorted(unknown)}: choose from {list(ABLATIONS)}")
    variants = variants or {}
    clash = set(variants) & set(ABLATIONS)
    if clash:
        raise ConfigError(f"--variant {sorted(clash)}: a name of the paper's ablations; name the variant otherwise")
    names = list(ablations or ([] if variants else ABLATIONS))
    if variants and PAPER not in names:  # a variant is always judged against the paper's recipe
        names.append(PAPER)
    recipes = {**{name: ABLATIONS[name] for name in names}, **variants}
    budget = steps or st.repro_steps
    scores: dict[str, list[tuple[float, float]]] = {}
    curves: dict[str, list] = {}
    seconds: dict[str, float] = {}
    for name, own in recipes.items():
        # the same budget for every run: no plateau stop, so every curve ends at the same step
        run_overrides = [*overrides, *own, f"steps={budget}", "curve.patience=0",  # warm-up within a short budget:
                         f"optim.warmup_steps={min(20, budget // 10)}",  # (the cosine needs it)
                         f"curve.every={max(1, min(st.curve_every, budget // 4))}"]
        for seed in seeds:
            slug = "_".join(re.findall(r"[a-z0-9]+", name.lower()))
            run, t0 = st.out / "repro_mini" / f"{slug}_seed{seed}", time.perf_counter()
            st.train(run, seed, run_overrides)
            wer, qa = st.repro_scores(run)
            seconds[name + f" seed {seed}"] = _run_seconds(run, time.perf_counter() - t0)
            scores.setdefault(name, []).append((wer, qa))
            curves.setdefault(name, []).append(series(read_curve(run), st.curve_key))
    report = st.out / "report"
    report.mkdir(parents=True, exist_ok=True)
    teacher = st.teacher_curve_wer(st.main_run, st.curve_limit)
    plot_wer_curves(curves, report / "repro_mini.png",
                    {f"cascade (Whisper): {teacher:.1f} %": teacher} if teacher is not None else None,
                    title=f"Held-out-voice WER during training, {len(seeds)} seeds per loss", ymax=120)
    lines = [f"# repro-mini: the paper's loss ablations in miniature ({len(seeds)} seeds, {budget} steps each)", "",
             "![learning curves](repro_mini.png)", "",
             f"Curves: WER on the first {st.curve_limit} held-out-voice clips; table: all held-out test "
             "clips and every spoken question (mean ± std over seeds, [min, max]).", "",
             "| training loss | held-out-voice WER (%) ↓ | spoken QA, held-out voices (%) ↑ |", "|---|---|---|"]
    for name, vals in scores.items():
        w, q = np.array(vals).T
        lines.append(f"| {name} | {w.mean():.1f} ± {w.std():.1f} [{w.min():.1f}, {w.max():.1f}] | "
                     f"{q.mean():.1f} ± {q.std():.1f} [{q.min():.1f}, {q.max():.1f}] |")
    lines += ["", "## The paper's orderings (held-out WER, lower is better)", "", *orderings(scores), ""]
    if variants:
        lines += ["## Beyond the paper: each variant against the paper's recipe (held-out WER)", "",
                  *orderings(scores, [(name, PAPER) for name in variants]), "",
                  *[f"- {name}: `{' '.join(own) or '(no overrides)'}`" for name, own in variants.items()], ""]
    if overrides:
        lines += [f"Every run: `{' '.join(overrides)}`.", ""]
    lines += [
              f"Wall time of this invocation {time.perf_counter() - start:.0f} s; the {len(seconds)} runs took "
              f"{sum(seconds.values()):.0f} s when they were trained and evaluated (each run's time is kept in "
              "its `repro_seconds.json`; corpus and pieces cached from `aura-jax demo`).",
              "Row 'CE + distill (cos + MSE)' is both Table 3's CE+distill and Table 4's cos+MSE."]
    path = report / "repro_mini.md"
    path.write_text("\n".join(lines) + "\n")
    print(path.read_text())
    return path


def _run_seconds(run: Path, elapsed: float) -> float:
    """A repro-mini run's train + eval time: measured now if it did its work, else as kept from then."""
    path = run / "repro_seconds.json"
    if elapsed > 5.0 or not path.exists():  # a cached run takes ~1 s
        path.write_text(json.dumps({"seconds": round(elapsed, 1)}))
    return json.loads(path.read_text())["seconds"]


ORDERINGS = (  # (better, worse): the paper's Tables 3 and 4
    ("CE + distill (cos + MSE)", "CE only"), ("CE + distill (cos + MSE)", "distill only"),
    ("CE + distill (cos + MSE)", "cosine only"), ("CE + distill (cos + MSE)", "MSE only"),
    ("cosine only", "MSE only"))


def orderings(scores: dict[str, list[tuple[float, float]]], pairs=ORDERINGS) -> list[str]:
    """One line per (better, worse) pair (default: the paper's orderings) whose two variants were run:
    whether the means order so, and whether the seeds separate them (every seed of one below every seed
    of the other)."""
    import numpy as np

    out = []
    for better, worse in pairs:
        if better not in scores or worse not in scores:
            continue
        b, w = np.array([v[0] for v in scores[better]]), np.array([v[0] for v in scores[worse]])
        holds = b.mean() < w.mean()
        separated = b.max() < w.min() if holds else w.max() < b.min()
        out.append(f"- {better} better than {worse}: **{'holds' if holds else 'does not hold'}** "
                   f"({b.mean():.1f} vs {w.mean():.1f} % WER; "
                   + ("the seeds do not overlap" if separated else "within the seed spread: the seeds overlap")
                   + ")")
    return out or ["- (no pair of the paper's orderings was run)"]
