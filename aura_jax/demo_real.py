"""`aura-jax demo` on the real pair: SmolLM2-135M-Instruct learns to hear from Whisper tiny.en.

    models  → `aura-jax fetch-models` (cached), or --llm / --whisper directories of one's own
    corpus  → templated English spoken by espeak-ng and flite voices (augmented); the gold-filtered
              test questions and held-out sentences spoken by every voice group (corpus/spoken.py)
    train   → AuRA with configs/demo_real.yaml, learning curves on each voice group's test clips
    eval    → ASR WER per voice group (AuRA, Whisper tiny.en) and spoken QA (AuRA hears / cascade /
              gold / AuRA reads the text), each per voice group: trained voices, held-out voices,
              held-out engine (festival)
    diagnose, export → as the toy demo (demo.py)
    report  → OUT/report/results.md, opening with the learning curves

Two recipes are trained side by side (RECIPES): the best one measured (DEFAULT_RECIPE, OUT/run_NAME,
whose tables the report shows in full) and the paper's (OUT/run_paper), compared in one table.

Every stage is cached under OUT. `--steps N` trains longer (a resumed run continues to N)."""

from __future__ import annotations

import dataclasses
import json
import os
import shlex
import shutil
import time
from pathlib import Path

from aura_jax.demo import (ABLATIONS, QA_INSTRUCTION, REPO_CONFIGS, Stages, diagnosis_table, hearing_lines,
                           run_repro_mini, wall_time_lines)

DEFAULT_MODELS = Path(".cache/models")
def recipe_overrides(name: str, corpus_dir: Path) -> list[str]:
    """The overrides of configs/demo_real.yaml that make each named recipe (docs/DEMO.md, issue 33).

    paper: AuRA's loss and data (ASR pairs and text QA; LoRA at every position).
    hears: beyond the paper: spoken training questions answered as the LLM answers them read, and
    LoRA at the audio positions only (text rows then train nothing: speech only)."""
    from aura_jax.corpus.spoken import SPOKEN_QA_DIR

    if name == "paper":
        return []
    if name == "hears":
        return ["lora.audio_only=true", "data.speech_fraction=1.0", "data.speech.1.type=commonvoice",
                f"data.speech.1.path={corpus_dir / SPOKEN_QA_DIR}", "data.speech.1.answer_column=answer",
                f"data.speech.1.instruction={QA_INSTRUCTION}"]
    raise ValueError(f"recipe {name!r}: choose from {', '.join(RECIPES)}")


RECIPES = ("paper", "hears")
DEFAULT_RECIPE = "hears"


@dataclasses.dataclass(frozen=True)
class RealSize:
    corpus: dict
    train_steps: int
    repro_steps: int  # AuRA steps per repro-mini run (15 runs)
    curve_every: int
    curve_limit: int  # clips per voice group in each learning-curve evaluation
    overrides: tuple[str, ...] = ()  # of configs/demo_real.yaml


FAST_STEP = ("audio.teacher_frames=bucket", "model.dot_dtype=bfloat16")

REAL_SIZES = {
    # the full demo trains on the fast CPU step (docs/DEMO.md, "The step"): 4.4x, with learning within the seed
    # spread of the paper's f32 step on a 30 s window at 150 steps x 2 seeds; `audio.teacher_frames=3000
    # model.dot_dtype=` as overrides (or configs/demo_real.yaml on its own) is the paper's exact step
    "full": RealSize(corpus=dict(num_train_sentences=2400, num_test_sentences=30), train_steps=150,
                     repro_steps=150, curve_every=50, curve_limit=12,
                     overrides=FAST_STEP),
    "quick": RealSize(corpus=dict(num_train_sentences=16, num_test_sentences=3, max_questions=2, max_text_qa=6,
                                  min_heard=0, min_voices=0, max_open_qa=4), train_steps=4,  # too few sentences to cover the test words
                      repro_steps=2, curve_every=4, curve_limit=2,
                      # one audio shape and batch 2: few compilations (CI), every stage still runs
                      overrides=("batch_size=2", "data.audio_buckets=[600]", "data.speech_fraction=0.5",
                                 "optim.warmup_steps=1")),
}


class RealStages(Stages):
    """The toy demo's stages (caching, training, diagnosis) with the real models and the spoken corpus."""

    def __init__(self, out, size: str = "full", seed: int = 0, *, llm: str | None = None, whisper: str | None = None,
                 models_dir: str | Path = DEFAULT_MODELS, steps: int | None = None, log=print,
                 recipe: str = DEFAULT_RECIPE, sentences: int | None = None, overrides: tuple[str, ...] = ()):
        super().__init__(out, "quick" if size == "quick" else "full", seed, log)
        self.recipe = recipe
        self.real = REAL_SIZES[size]
        self.user_overrides = tuple(overrides)
        if overrides:  # the user's, after the size's (e.g. the paper's step: audio.teacher_frames=3000 model.dot_dtype=)
            self.real = dataclasses.replace(self.real, overrides=(*self.real.overrides, *overrides))
        if sentences is not None:  # more distinct training sentences; the test sets stay the same (same seed)
            self.real = dataclasses.replace(self.real, corpus={**self.real.corpus, "num_train_sentences": sentences})
        self.steps = steps or self.real.train_steps
        self.models_dir = Path(models_dir)
        self.lm_dir = Path(llm) if llm else self.models_dir / "smollm2-135m-instruct"
        self.whisper_dir = Path(whisper) if whisper else self.models_dir / "whisper-tiny.en"
        self.fetch = not (llm and whisper)

    curve_key = "heldout_voices_wer"

    @property
    def curve_every(self) -> int:
        return self.real.curve_every

    @property
    def curve_limit(self) -> int:
        return self.real.curve_limit

    @property
    def repro_steps(self) -> int:
        return self.real.repro_steps

    def repro_scores(self, run: Path) -> tuple[float, float]:
        """(WER %, spoken QA %) of one repro-mini run, both on the held-out voices."""
        qa = group_qa(self.evaluate(run, "sdqa", "aura"), self.groups())["heldout_voices"]
        return self.evaluate(run, "asr", "aura", "heldout_voices")["table"]["wer"]["all"], qa

    @property
    def main_run(self) -> Path:
        """The demo's run of its recipe (repro-mini reads the cascade's predictions from its evaluations)."""
        return self.out / f"run_{self.recipe}"

    def recipe_scores(self, run_dir: Path) -> dict:
        """A recipe's row of the side-by-side table: AuRA's WER and spoken QA per voice group, text QA
        (the adapted LLM reading the questions), and the audio's worth per group."""
        groups = self.groups()
        return {"asr": {g: self.evaluate(run_dir, "asr", "aura", g)["table"]["wer"]["all"] for g in groups},
                "sdqa": group_qa(self.evaluate(run_dir, "sdqa", "aura"), groups),
                "text_qa": group_qa(self.evaluate(run_dir, "sdqa", "text"), groups)["all"],
                "audio_use": {g: u["gap"] for g, u in self.audio_use(run_dir).items()}}

    def eval_dir(self, run_dir: Path) -> Path:
        """Evaluations of the run's latest checkpoint (a run continued with a larger `--steps` is evaluated afresh)."""
        return run_dir / "eval" / f"step{latest_step(run_dir)}"

    def diagnose(self, run_dir: Path) -> dict:
        from aura_jax.evaluate.diagnose import diagnose

        ev = self.eval_dir(run_dir)
        return diagnose(run_dir, self.corpus_dir / "sdqa", ev / "sdqa_aura" / "predictions.jsonl", ev / "sdqa_diagnosis")

    def audio_use(self, run_dir: Path) -> dict:
        """Teacher-forced CE with each clip's own audio vs another's, per voice group (evaluate/audio_use.py)."""
        from aura_jax.evaluate.audio_use import audio_use

        path = self.eval_dir(run_dir) / "audio_use.json"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            size = 4 if self.real.corpus["num_test_sentences"] >= 8 else 2  # quick: 3 clips per group
            path.write_text(json.dumps({g: audio_use(str(run_dir), str(self.corpus_dir / f"asr_test_{g}"), batches=3,
                                                     batch_size=size) for g in self.groups()}, indent=1))
        return json.loads(path.read_text())

    def teacher_curve_wer(self, run_dir: Path, n: int, group: str = "heldout_voices") -> float | None:
        """Whisper tiny.en's WER % on the clips a group's learning curve reads (its first n test clips)."""
        from aura_jax.evaluate.metrics import asr_scores

        path = self.eval_dir(run_dir) / f"asr_cascade_{group}" / "predictions.jsonl"
        if not path.exists():
            return None
        rows = [json.loads(line) for line in path.read_text().splitlines()[:n] if line.strip()]
        return 100 * asr_scores([r["prediction"] for r in rows], [r["references"][0] for r in rows])["wer"]

    def pieces(self) -> tuple[dict, dict]:
        """The pretrained pair: fetched once into models_dir (aura-jax fetch-models), never trained here."""
        from aura_jax.convert.fetch import fetch_models
        from aura_jax.hf import read_config

        if self.fetch:
            self._timed("models", lambda: fetch_models(self.models_dir))
        return read_config(self.lm_dir), read_config(self.whisper_dir)

    def corpus(self) -> dict:
        from aura_jax.corpus.spoken import make_spoken_corpus, make_spoken_questions

        def build():
            summary = make_spoken_corpus(self.corpus_dir, str(self.lm_dir), seed=self.seed, log=self.log,
                                         **self.real.corpus)
            # the spoken training questions (seconds to make): the `hears` recipe's second speech source
            make_spoken_questions(self.corpus_dir, seed=self.seed, log=self.log)
            return summary

        return self._timed("corpus", build)

    def groups(self) -> dict[str, list[str]]:
        return json.loads((self.corpus_dir / "corpus.json").read_text())["groups"]

    def config(self, run_dir: Path, seed: int, overrides: list[str] = ()):
        from aura_jax.config import load_config

        sets = ", ".join(f"{g}: {self.corpus_dir / f'asr_test_{g}'}" for g in self.groups())
        return load_config(REPO_CONFIGS / "demo_real.yaml", [
            f"model.llm={self.lm_dir}", f"model.teacher={self.whisper_dir}",
            f"data.speech.0.path={self.corpus_dir / 'asr_train'}", f"data.text.0.path={self.corpus_dir / 'text_qa.jsonl'}",
            f"run_dir={run_dir}", f"steps={self.steps}", f"seed={seed}", f"curve.every={self.real.curve_every}",
            f"curve.limit={self.real.curve_limit}", f"curve.batch_size={min(8, 2 * self.real.curve_limit)}",
            "curve.patience=0", f"curve.sets={{{sets}}}", *self.real.overrides, *overrides])

    def evaluate(self, run_dir: Path, task: str, system: str, group: str | None = None) -> dict:
        from aura_jax.evaluate.harness import run_eval

        out = self.eval_dir(run_dir) / (f"{task}_{system}" + (f"_{group}" if group else ""))
        if (out / "summary.json").exists():
            return json.loads((out / "summary.json").read_text())
        data = self.corpus_dir / (f"asr_test_{group}" if task == "asr" else "sdqa")
        return run_eval(str(run_dir), task, str(data), system=system, batch_size=8, out=str(out),
                        whisper=str(self.whisper_dir), max_new_tokens=32 if task == "asr" else 24, progress=True)


def latest_step(run_dir: Path) -> int | None:
    from aura_jax.training.checkpoint import Checkpointer

    ckpt = Checkpointer(Path(run_dir) / "checkpoints", async_save=False)
    try:
        return ckpt.latest_step()
    finally:
        ckpt.close()


SYSTEMS = (("aura", "AuRA hears the question"), ("cascade", "cascade (Whisper tiny.en → SmolLM2)"),
           ("gold", "gold (SmolLM2 reads the question)"), ("text", "AuRA reads the text question (SmolLM2 + LoRA)"))


def run_real_demo(out: str | Path = "runs/demo", *, quick: bool = False, seed: int = 0, steps: int | None = None,
                  llm: str | None = None, whisper: str | None = None, models_dir: str | Path = DEFAULT_MODELS,
                  recipe: str = DEFAULT_RECIPE, compare: bool = True, sentences: int | None = None,
                  overrides: tuple[str, ...] = ()) -> dict:
    """The demo with `recipe` (tables in full, diagnosis, export) and, with `compare`, the paper's recipe
    trained beside it at the same corpus, steps and seed (one side-by-side table)."""
    from aura_jax.training.distributed import enable_compilation_cache

    start, load = time.perf_counter(), os.getloadavg()
    recipe_overrides(recipe, Path(out))  # an unknown name fails before any work
    if overrides:  # so does an unknown or ill-typed key=value
        from aura_jax.config import load_config

        load_config(REPO_CONFIGS / "demo_real.yaml", list(overrides))
    # every evaluation builds its system afresh: identical programs (a group's ASR, the text systems) then
    # come from the persistent cache instead of compiling again
    enable_compilation_cache("~/.cache/aura_jax/xla")
    st = RealStages(out, "quick" if quick else "full", seed, llm=llm, whisper=whisper, models_dir=models_dir,
                    steps=steps, recipe=recipe, sentences=sentences, overrides=tuple(overrides))
    st.pieces()
    corpus = st.corpus()
    names = [recipe] + (["paper"] if compare and recipe != "paper" else [])
    runs = {name: st.out / f"run_{name}" for name in names}
    for name, run in runs.items():
        st._timed("train" if name == recipe else f"train {name}",
                  lambda: st.train(run, seed, recipe_overrides(name, st.corpus_dir)))
    run, groups = runs[recipe], list(st.groups())
    results = st._timed("eval", lambda: {
        **{("asr", s, g): st.evaluate(run, "asr", s, g) for g in groups for s in ("aura", "cascade")},
        **{("sdqa", s, None): st.evaluate(run, "sdqa", s) for s, _ in SYSTEMS}})
    side = {name: st.recipe_scores(r) if name == recipe else st._timed(f"eval {name}", lambda: st.recipe_scores(r))
            for name, r in runs.items()}
    diagnosis = st._timed("diagnose", lambda: {**st.diagnose(run), "audio_use": st.audio_use(run)})
    heard = st._timed("export", lambda: listen(st, run, runs.get("paper")))
    st.times["total"] = time.perf_counter() - start
    st.load = (load, os.getloadavg())  # 1/5/15-minute load averages at the start and at the end
    report = write_real_report(st, corpus, results, heard, diagnosis, quick, side)
    print(report.read_text())
    print(f"report: {report.parent}")
    return {"results": results, "heard": heard, "times": st.times, "report": str(report), "recipes": side}


def listen(st: RealStages, run: Path, paper: Path | None = None) -> dict:
    """The recipe's float32 export (`--format adapter` for a lora.audio_only run, the default recipe; else
    merged) answers every spoken test question in PyTorch (AuraSpeechLM, batched greedy, as eval decodes),
    compared answer for answer with the JAX eval of the same run on the same clips; then one held-out-engine
    question in full. The paper's run, trained beside it, is exported merged too (OUT/export_paper)."""
    from aura_jax.config import load_config
    from aura_jax.evaluate.datasets import read_sdqa
    from aura_jax.torch import AuraSpeechLM

    config = load_config(run / "config.yaml")
    kind = "adapter" if config.lora.audio_only else "merged"
    target = export_once(st, run, st.out / "export", kind)
    if paper is not None and paper != run and not load_config(paper / "config.yaml").lora.audio_only:
        export_once(st, paper, st.out / "export_paper", "merged")
    answers = torch_answers(st, run, target, config.model.dot_dtype)
    engine = st.groups()["heldout_engine"]
    item = next(it for it in read_sdqa(st.corpus_dir / "sdqa") if it.dialect in engine)
    lm = AuraSpeechLM.from_pretrained(target)
    wave = item.audio.load()
    heard = lm.generate(wave, lm.aura["prompt"]["asr_instruction"], max_new_tokens=32).strip()
    answer = lm.generate(wave, QA_INSTRUCTION, max_new_tokens=24).strip()
    runner = ("the exported PyTorch model (AuraSpeechLM, " + ("adapter export: LoRA at the audio positions only)"
                                                              if kind == "adapter" else "merged export)"))
    return {"voice": item.dialect, "question": item.question, "heard": heard, "answer": answer,
            "references": item.references, "runner": runner, "export": str(target), "kind": kind, **answers}


def export_once(st: RealStages, run: Path, target: Path, kind: str) -> Path:
    """`aura-jax export RUN --format KIND --dtype float32` into `target`, unless the run's latest step is there."""
    from aura_jax.torch.export import export

    made = target / "aura_config.json"
    if target.exists() and not (made.exists() and json.loads(made.read_text()).get("step") == latest_step(run)
                                and json.loads(made.read_text()).get("kind") == kind):  # of a shorter run, or other
        shutil.rmtree(target)
    if not made.exists():
        export(run, st.lm_dir, target, format=kind, dtype="float32")
    return target


def torch_answers(st: RealStages, run: Path, target: Path, dot_dtype: str) -> dict:
    """The export's answers to every spoken test question (eval in PyTorch, OUT/run_X/eval/stepN/sdqa_aura_torch)
    against the JAX eval's of the same run and clips (sdqa_aura). A run whose weight dots are bf16 (the full
    demo's fast step) is also evaluated in JAX at float32 (sdqa_aura_f32), the export's own precision."""
    from aura_jax.evaluate.harness import agreement, run_eval

    ev = st.eval_dir(run)
    st.evaluate(run, "sdqa", "aura")  # the JAX eval (cached: the eval stage made it)
    out = ev / "sdqa_aura_torch"
    if not (out / "summary.json").exists():
        run_eval(str(target), "sdqa", str(st.corpus_dir / "sdqa"), system="aura", batch_size=8, out=str(out),
                 max_new_tokens=24, progress=True)
    rows = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines() if line.strip()]
    against = {"jax": agreement(rows, str(ev / "sdqa_aura"))}
    if dot_dtype:
        f32 = ev / "sdqa_aura_f32"
        if not (f32 / "summary.json").exists():
            run_eval(str(run), "sdqa", str(st.corpus_dir / "sdqa"), system="aura", batch_size=8, out=str(f32),
                     max_new_tokens=24, progress=True, overrides=["model.dot_dtype="])
        against["jax_f32"] = agreement(rows, str(f32))
    return {"torch_eval": str(out), "agreement": against, "dot_dtype": dot_dtype or "float32"}


def group_qa(summary: dict, groups: dict[str, list[str]]) -> dict[str, float]:
    """Spoken-QA accuracy (%, "contains") per voice group: the mean over the group's voices."""
    per = summary["table"]["contains"]
    out = {g: sum(per[c] for c in cols) / len(cols) for g, cols in groups.items() if all(c in per for c in cols)}
    out["all"] = per["AVG"]
    return out


GROUP_NAMES = {"trained": "trained voices", "heldout_voices": "held-out voices", "heldout_engine": "held-out engine",
               "heldout_neural": "held-out neural voice"}


def audio_use_lines(use: dict) -> list[str]:
    return ["Does AuRA use the audio? Teacher-forced CE per transcript token on held-out sentences, each clip's own "
            "audio against another clip's (nats; equal means it has learned the sentences' language, not to hear): "
            + "; ".join(f"{GROUP_NAMES[g]} {u['ce_own_audio']:.3f} vs {u['ce_other_audio']:.3f} (gap {u['gap']:.3f}, "
                        f"{u['rows']} clips)" for g, u in use.items()) + ".", ""]


def recipe_lines(st: RealStages, side: dict) -> list[str]:
    """Markdown: each trained recipe's figures in one table (same corpus, steps and seed), named."""
    groups = list(st.groups())
    head = ([f"WER {GROUP_NAMES[g]}" for g in groups] + [f"spoken QA {GROUP_NAMES[g]}" for g in groups]
            + ["text QA"] + [f"audio's worth {GROUP_NAMES[g]}" for g in groups])
    rows = [f"| {name}{' (this report)' if name == st.recipe else ''} | "
            + " | ".join([f"{r['asr'][g]:.1f}" for g in groups] + [f"{r['sdqa'][g]:.1f}" for g in groups]
                         + [f"{r['text_qa']:.1f}"] + [f"{r['audio_use'][g]:.2f}" for g in groups]) + " |"
            for name, r in side.items()]
    return ["## The recipes side by side (same corpus, steps and seed)", "",
            "WER and QA in %; text QA: the adapted LLM reading the spoken questions as text; the audio's worth: "
            "nats per transcript token (CE with another clip's audio − with its own).", "",
            "| recipe | " + " | ".join(head) + " |", "|---" * (len(head) + 1) + "|", *rows, "",
            *[f"- {name}: `{' '.join(recipe_overrides(name, st.corpus_dir)) or '(configs/demo_real.yaml as it is)'}`"
              for name in side], ""]


def write_real_report(st: RealStages, corpus: dict, results: dict, heard: dict, diagnosis: dict, quick: bool,
                      side: dict | None = None) -> Path:
    from aura_jax.evaluate.curve import plot_wer_curves, read_curve, series
    from aura_jax.training.metrics import plot_losses

    report = st.out / "report"
    report.mkdir(parents=True, exist_ok=True)
    run = st.main_run
    groups = st.groups()
    curve = read_curve(run)
    n = st.curve_limit
    teacher = {g: st.teacher_curve_wer(run, n, g) for g in groups}
    plot_wer_curves({f"AuRA, {GROUP_NAMES[g]}": [series(curve, f"{g}_wer")] for g in groups},
                    report / "learning_curve.png",
                    {f"Whisper tiny.en, {GROUP_NAMES[g]}: {w:.1f} %": w for g, w in teacher.items() if w is not None},
                    title=f"AuRA's WER during training ({n} clips per voice group)", ymax=150)
    plot_losses(run / "metrics.jsonl", report / "aura_loss.png")
    asr = []
    for g in groups:
        a, c = results[("asr", "aura", g)], results[("asr", "cascade", g)]
        wa, wc = a["table"]["wer"]["all"], c["table"]["wer"]["all"]
        asr.append(f"| {GROUP_NAMES[g]} | {a['scored']} | {wa:.1f} | {wc:.1f} | {wa / max(wc, 1e-9):.2f} | "
                   f"{a['latency_s_per_sample']:.3f} | {c['latency_s_per_sample']:.3f} |")
    qa = []
    for s, name in SYSTEMS:
        r = results[("sdqa", s, None)]
        per = group_qa(r, groups)
        qa.append(f"| {name} | " + " | ".join(f"{per[g]:.1f}" for g in [*groups, "all"]) +
                  f" | {r['latency_s_per_sample']:.3f} |")
    final = curve[-1] if curve else {}
    counts = corpus["counts"]
    kept = [g for g in corpus["gold"] if g["kept"]]
    kinds = {}
    for g in kept:
        kinds[g["kind"]] = kinds.get(g["kind"], 0) + 1
    cfg = st.config(run, st.seed, recipe_overrides(st.recipe, st.corpus_dir))
    window = "the clip's bucket" if cfg.audio.teacher_frames == "bucket" else f"{cfg.audio.teacher_frames} mel frames"
    lines = [
        f"# aura-jax demo{' --quick' if quick else ''}: SmolLM2-135M-Instruct learns to hear from Whisper tiny.en", "",
        "![learning curves](learning_curve.png)", "",
        f"AuRA's WER during training on the first {n} test clips of each voice group, every "
        f"{st.curve_every} steps; dashed: Whisper tiny.en (the teacher, and the cascade's ASR) on the same clips."
        + (" Last point: step {}: ".format(final["step"]) +
           ", ".join(f"{GROUP_NAMES[g]} {final[f'{g}_wer']:.1f} %" for g in groups if f"{g}_wer" in final) + "."
           if final else ""), "",
        f"Recipe **{st.recipe}**: K={cfg.lora.num_layers} adapted layers of 30{' (at the audio positions only)' if cfg.lora.audio_only else ''}, LoRA rank {cfg.lora.rank}, patches of "
        f"{cfg.audio.patch_frames} mel frames, teacher layers {cfg.distill.teacher_layers}, lr "
        f"{cfg.optim.learning_rate:g} ({cfg.optim.schedule}), {st.steps} steps of batch {cfg.batch_size}, "
        f"speech fraction {cfg.data.speech_fraction}, speech sources {[Path(x.path).name for x in cfg.data.speech]}; "
        f"the teacher hears {window}, weight dots in {cfg.model.dot_dtype or cfg.model.compute_dtype}.", "",
        *(recipe_lines(st, side) if side else []),
        f"Corpus: {counts['asr_train']} training clips ({', '.join(corpus['train_voices'])}; augmented: "
        f"{corpus['augmented']}), {counts['text_qa']} text-QA pairs the LLM answers right (of "
        f"{counts['text_qa_candidates']}), {counts['sdqa_questions']} spoken test questions the LLM answers right "
        f"from the text (of {counts['test_questions']}; {kinds}). Voice groups: "
        + "; ".join(f"{GROUP_NAMES[g]}: {', '.join(v)}" for g, v in groups.items()) + ".", "",
        *coverage_lines(corpus.get("coverage")),
        "## ASR: WER % per voice group (held-out sentences)", "",
        "| voices | clips | AuRA | Whisper tiny.en | AuRA / Whisper | AuRA s/clip | Whisper s/clip |",
        "|---|---|---|---|---|---|---|", *asr, "",
        "## Spoken QA: answer contains the reference, % (gold-filtered questions)", "",
        "| system | " + " | ".join(GROUP_NAMES.get(g, g) for g in [*groups, "all"]) + " | s / answer |",
        "|---" * (len(groups) + 3) + "|", *qa, "",
        "Gold is below 100 % on spoken items only where a question's text row differs from the corpus's gold "
        "filter (the same LLM, prompt and greedy decoding in JAX rather than PyTorch).", "",
        "## What AuRA does with each spoken question", "", *diagnosis_table(diagnosis), "",
        *hearing_lines(diagnosis.get("hearing")), *audio_use_lines(diagnosis["audio_use"]),
        *torch_lines(heard),
        f"## One held-out-engine question, answered by {heard['runner']}", "",
        f"voice {heard['voice']}, question {heard['question']!r}: heard {heard['heard']!r}, answered "
        f"{heard['answer']!r} (reference {heard['references']}).", "",
        *wall_time_lines(st),
        f"Load average (1, 5, 15 min) at the start {[round(x, 2) for x in st.load[0]]}, at the end "
        f"{[round(x, 2) for x in st.load[1]]}; {os.cpu_count()} CPUs.", "",
        "## Reproduce", "", f"    aura-jax demo --out {st.out}{' --quick' if quick else ''} --seed {st.seed} "
        f"--steps {st.steps} --recipe {st.recipe}" + ("" if side and len(side) > 1 else " --no-compare")
        + "".join(f" {shlex.quote(o)}" for o in st.user_overrides),
        f"    aura-jax eval {run} --task sdqa --data {st.corpus_dir / 'sdqa'} --out /tmp/sdqa_aura",
        f"    aura-jax eval {run} --task sdqa --system cascade --whisper {st.whisper_dir} --data {st.corpus_dir / 'sdqa'} "
        "--out /tmp/sdqa_cascade",
        f"    aura-jax export {run} --out {st.out / 'export'} --format {heard['kind']} --dtype float32",
        f"    aura-jax eval {st.out / 'export'} --task sdqa --data {st.corpus_dir / 'sdqa'} --max-new-tokens 24 "
        f"--agree-with {st.eval_dir(run) / 'sdqa_aura'} --out /tmp/sdqa_torch",
        f"    aura-jax infer {st.out / 'export'} --audio CLIP.wav --prompt {QA_INSTRUCTION!r}", ""]
    path = report / "results.md"
    path.write_text("\n".join(lines))
    (report / "results.json").write_text(json.dumps({
        "asr": {g: {"aura": results[("asr", "aura", g)]["table"]["wer"]["all"],
                    "whisper": results[("asr", "cascade", g)]["table"]["wer"]["all"]} for g in groups},
        "sdqa": {s: group_qa(results[("sdqa", s, None)], groups) for s, _ in SYSTEMS},
        "latency_s": {s: results[("sdqa", s, None)]["latency_s_per_sample"] for s, _ in SYSTEMS},
        "audio_use": diagnosis["audio_use"], "curve": curve, "teacher_curve_wer": teacher, "times": st.times,
        "steps": st.steps, "recipe": st.recipe, "recipes": side or {},
        "torch": {k: heard[k] for k in ("runner", "export", "kind", "agreement", "dot_dtype") if k in heard}},
        indent=1))
    return path


def torch_lines(heard: dict) -> list[str]:
    """Markdown: which runner answered the spoken test questions in PyTorch, and how many of its answers are
    identical to the JAX eval's of the same run on the same clips."""
    if "agreement" not in heard:
        return []
    ag = heard["agreement"]
    jax = ag["jax"]
    lines = [f"## The export in PyTorch: {jax['identical']} of {jax['compared']} answers identical to JAX", "",
             f"Runner: {heard['runner']}, float32, `{heard['export']}` (`--format {heard['kind']}`). It answered every "
             f"spoken test question (batched greedy, 24 tokens, as eval decodes; `{heard['torch_eval']}`): "
             f"{jax['identical']} of {jax['compared']} answers are identical to the JAX eval's of the same run on "
             f"the same clips (weight dots in {heard['dot_dtype']})"]
    if "jax_f32" in ag:
        f32 = ag["jax_f32"]
        lines[-1] += (f"; against the same run evaluated in JAX at float32 (`model.dot_dtype=`, the export's "
                      f"precision): {f32['identical']} of {f32['compared']}")
    lines[-1] += "."
    return lines + [""]


def coverage_lines(cov: dict | None) -> list[str]:
    """The coverage table: per spoken test question, its rarest word's count in training and the fewest
    training voices that speak any of its words."""
    if not cov:
        return []
    lines = ["## Coverage: every test word is heard in training (no test sentence or question is)", "",
             f"{cov['words_meeting']} of {cov['test_words']} test words (test questions and test sentences) are "
             f"heard at least {cov['min_heard']} times by at least {cov['min_voices']} training voices; the rarest "
             f"word of a test sentence is heard {cov['test_sentences_min_heard']} times.", "",
             "| test question | rarest word | heard | fewest voices |", "|---|---|---|---|"]
    lines += [f"| {q} | {c['rarest']} | {c['heard']} | {c['voices']} |" for q, c in cov["questions"].items()]
    return lines + [""]


def add_sentences_argument(p) -> None:
    p.add_argument("--sentences", type=int, default=None, help="training sentences in the corpus (default: the "
                   "size's, 2400 in full); the test sentences and questions do not change")


def add_arguments(p) -> None:
    p.add_argument("--out", default="runs/demo", help="where every stage and the report go (default runs/demo)")
    p.add_argument("--quick", action="store_true", help="minute-scale sizes for CI (a smoke test, not a result)")
    p.add_argument("--toy", action="store_true", help="the miniature instead: a tiny LM and a tiny Whisper trained "
                   "here on espeak-ng speech (docs/DEMO.md, 'The toy stack')")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--steps", type=int, default=None, help="AuRA training steps (default: the size's; a longer "
                   "run resumes from the cached one)")
    p.add_argument("--llm", default=None, help="a Hugging Face Llama/Qwen2 instruct directory instead of SmolLM2")
    p.add_argument("--whisper", default=None, help="a Hugging Face Whisper directory instead of tiny.en")
    p.add_argument("--models", default=str(DEFAULT_MODELS), help="where fetch-models puts the pair")
    p.add_argument("--recipe", default=DEFAULT_RECIPE, choices=RECIPES,
                   help=f"the recipe the report shows in full (default {DEFAULT_RECIPE}, the best measured; "
                        "docs/DEMO.md)")
    add_sentences_argument(p)
    p.add_argument("--no-compare", dest="compare", action="store_false",
                   help="do not train the paper's recipe beside it")
    p.add_argument("overrides", nargs="*", help="key=value overrides of configs/demo_real.yaml for every run, e.g. "
                                                "the paper's f32 step on the 30 s window: audio.teacher_frames=3000 "
                                                "model.dot_dtype=")


def main(args) -> int:
    if args.toy:
        from aura_jax.demo import run_demo

        if args.overrides:
            from aura_jax.config import ConfigError

            raise ConfigError(f"demo --toy takes no key=value overrides (got {args.overrides}); they are for the real pair")
        run_demo(args.out, quick=args.quick, seed=args.seed)
        return 0
    if bool(args.llm) != bool(args.whisper):
        from aura_jax.config import ConfigError

        raise ConfigError("--llm and --whisper go together (the corpus's gold filter and the teacher are a pair)")
    run_real_demo(args.out, quick=args.quick, seed=args.seed, steps=args.steps, llm=args.llm, whisper=args.whisper,
                  models_dir=args.models, recipe=args.recipe, compare=args.compare, sentences=args.sentences,
                  overrides=tuple(args.overrides))
    return 0


def add_repro_arguments(p) -> None:
    p.add_argument("--out", default="runs/demo", help="the demo directory whose corpus and models it reuses")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--quick", action="store_true")
    p.add_argument("--toy", action="store_true", help="the miniature's pieces (aura-jax demo --toy)")
    p.add_argument("--ablations", nargs="+", default=None, help=f"a subset of {list(ABLATIONS)}")
    p.add_argument("--steps", type=int, default=None, help="AuRA training steps per run (default: the size's)")
    p.add_argument("--models", default=str(DEFAULT_MODELS), help="where fetch-models puts the pair")
    add_sentences_argument(p)
    p.add_argument("--variant", action="append", default=[], metavar="NAME:k=v,k=v",
                   help="a recipe beyond the paper's, judged against the paper's recipe at the same budget and "
                        "seeds, e.g. 'CTC 0.3:loss.ctc_weight=0.3' (repeatable)")
    p.add_argument("overrides", nargs="*", help="key=value overrides for every run (before the options), e.g. "
                                                "audio.teacher_frames=bucket model.dot_dtype=bfloat16")


def repro_main(args) -> int:
    from aura_jax.bench.variants import parse_variant

    stages = None if args.toy else RealStages(args.out, "quick" if args.quick else "full", 0, models_dir=args.models,
                                              sentences=args.sentences)
    variants = dict(parse_variant(v) for v in args.variant)
    run_repro_mini(args.out, seeds=tuple(args.seeds), quick=args.quick, ablations=args.ablations, steps=args.steps,
                   stages=stages, variants=variants, overrides=list(args.overrides))
    return 0
