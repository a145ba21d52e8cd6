"""`aura-jax demo --quick` on the real pair (SmolLM2-135M-Instruct hears from Whisper tiny.en), end to
end: fetched models → spoken corpus → AuRA with learning curves per voice group → ASR and spoken QA
per voice group for AuRA, the cascade, gold and AuRA reading the text → diagnosis → PyTorch export →
report; then a second run that does no work. A smoke test of the stages (4 steps), not a result."""

import contextlib
import io
import json

import pytest

from aura_jax import cli
from aura_jax.demo_real import DEFAULT_RECIPE
from aura_jax.synth import espeak_available

pytestmark = pytest.mark.skipif(not espeak_available(), reason="the corpus is spoken by espeak-ng, flite, festival")
GROUPS = ("trained", "heldout_voices", "heldout_engine", "heldout_neural")  # corpus v4 (issue 42)
RUN = f"run_{DEFAULT_RECIPE}"  # the best recipe's run; the paper's recipe trains beside it in run_paper


@pytest.fixture(scope="module")
def real_demo(real_models, tmp_path_factory):
    out = tmp_path_factory.mktemp("real_demo")
    models = real_models["smollm2-135m-instruct"].parent
    with contextlib.redirect_stdout(io.StringIO()):
        assert cli.main(["demo", "--quick", "--out", str(out), "--models", str(models)]) == 0
    return out, models


def test_the_report_opens_with_the_curves_and_holds_every_table(real_demo):
    out, _ = real_demo
    report = (out / "report" / "results.md").read_text()
    assert report.splitlines()[2] == "![learning curves](learning_curve.png)"
    assert (out / "report" / "learning_curve.png").stat().st_size > 0
    for section in ("## ASR: WER % per voice group", "## Spoken QA", "## What AuRA does with each spoken question",
                    "## The recipes side by side", "## One held-out-engine question, answered by", "## Wall time"):
        assert section in report
    for row in ("| trained voices |", "| held-out voices |", "| held-out engine |", "| AuRA hears the question |",
                "| cascade (Whisper tiny.en → SmolLM2) |", "| gold (SmolLM2 reads the question) |",
                "| AuRA reads the text question (SmolLM2 + LoRA) |", "| answers correctly |"):
        assert row in report
    results = json.loads((out / "report" / "results.json").read_text())
    assert set(results["asr"]) == set(GROUPS) and set(results["sdqa"]) == {"aura", "cascade", "gold", "text"}
    assert all(set(v) == {*GROUPS, "all"} for v in results["sdqa"].values())
    # the real cascade hears festival's held-out voices (Whisper tiny.en was not trained here)
    assert all(results["asr"][g]["whisper"] < 60 for g in GROUPS)
    assert list(results["recipes"]) == [DEFAULT_RECIPE, "paper"] and (out / "run_paper" / "checkpoints").is_dir()
    for name in results["recipes"]:
        assert f"| {name}" in report and f"- {name}: `" in report
    mine = results["recipes"][DEFAULT_RECIPE]
    assert mine["asr"] == {g: results["asr"][g]["aura"] for g in GROUPS} and mine["sdqa"] == results["sdqa"]["aura"]


def test_audio_only_lora_reads_text_exactly_as_the_base_llm(real_demo):
    """The default recipe's adapters act at audio positions only: reading the questions as text, the
    adapted LLM answers exactly as SmolLM2 does (gold), after training."""
    out, _ = real_demo
    ev = out / RUN / "eval" / "step4"
    text, gold = ([json.loads(line)["prediction"] for line in (ev / f"sdqa_{s}" / "predictions.jsonl").read_text()
                   .splitlines()] for s in ("text", "gold"))
    assert text == gold and len(text) > 0


def test_the_torch_runner_answers_as_jax_on_the_demo_test_clips(real_demo):
    """The default recipe's export (`--format adapter`, float32) in AuraSpeechLM gives, clip for clip, the
    greedy answers of the JAX eval of the same run (an independent implementation) on every spoken test
    clip; its adapters are not zero, so the audio-position update is in the answers being compared."""
    from safetensors.numpy import load_file

    out, _ = real_demo
    ev = out / RUN / "eval" / "step4"
    jax, torch = ([(r["id"], r["dialect"], r["prediction"]) for r in map(json.loads, (
        ev / name / "predictions.jsonl").read_text().splitlines())] for name in ("sdqa_aura", "sdqa_aura_torch"))
    assert torch == jax and len(jax) >= 8 and len({p for *_, p in jax}) > 1
    aura = json.loads((out / "export" / "aura_config.json").read_text())
    assert aura["kind"] == "adapter" and aura["lora"]["positions"] == "audio" and aura["dtype"] == "float32"
    assert all(abs(v).max() > 0 for v in load_file(out / "export" / "audio_lora.safetensors").values())
    results = json.loads((out / "report" / "results.json").read_text())["torch"]
    assert results["agreement"]["jax"]["identical"] == results["agreement"]["jax"]["compared"] == len(jax)
    assert results["kind"] == "adapter" and "AuraSpeechLM" in results["runner"]
    report = (out / "report" / "results.md").read_text()
    assert f"## The export in PyTorch: {len(jax)} of {len(jax)} answers identical to JAX" in report
    assert json.loads((out / "export_paper" / "aura_config.json").read_text())["kind"] == "merged"


def test_learning_curves_cover_every_voice_group(real_demo):
    out, _ = real_demo
    curve = [json.loads(line) for line in (out / RUN / "curve.jsonl").read_text().splitlines()]
    assert [r["step"] for r in curve] == [4]
    assert all(r[f"{g}_wer"] >= 0 for r in curve for g in GROUPS)


def test_per_group_numbers_come_from_the_per_voice_tables(real_demo):
    from aura_jax.demo_real import group_qa

    out, _ = real_demo
    corpus = json.loads((out / "corpus" / "corpus.json").read_text())
    summary = json.loads((out / RUN / "eval" / "step4" / "sdqa_cascade" / "summary.json").read_text())
    rows = [json.loads(line) for line in (out / RUN / "eval" / "step4" / "sdqa_cascade" / "predictions.jsonl").read_text().splitlines()]
    per = group_qa(summary, corpus["groups"])
    for group, voices in corpus["groups"].items():  # recomputed from the predictions, row by row
        mine = [r["scores"]["contains"] for r in rows if r["dialect"] in voices]
        assert per[group] == pytest.approx(100 * sum(mine) / len(mine))


def test_a_second_run_reuses_every_stage(real_demo, monkeypatch):
    import aura_jax.torch.export as export
    import aura_jax.training.train as train

    out, models = real_demo

    def redo(*args, **kwargs):
        raise AssertionError("a cached stage ran again")

    monkeypatch.setattr(train, "train", redo)
    monkeypatch.setattr(export, "export", redo)
    stamps = [out / "corpus" / "corpus.json", out / RUN / "eval" / "step4" / "sdqa_aura" / "summary.json",
              out / RUN / "eval" / "step4" / "asr_cascade_heldout_engine" / "summary.json"]
    before = [p.stat().st_mtime_ns for p in stamps]
    with contextlib.redirect_stdout(io.StringIO()):
        assert cli.main(["demo", "--quick", "--out", str(out), "--models", str(models)]) == 0
    assert [p.stat().st_mtime_ns for p in stamps] == before


def test_an_own_llm_needs_its_whisper_too(tmp_path, capsys):
    assert cli.main(["demo", "--out", str(tmp_path), "--llm", str(tmp_path)]) == 2
    assert "--llm and --whisper go together" in capsys.readouterr().err and not any(tmp_path.iterdir())


def test_repro_mini_runs_on_the_real_pair_and_scores_the_held_out_voices(real_demo):
    out, models = real_demo
    with contextlib.redirect_stdout(io.StringIO()):
        assert cli.main(["repro-mini", "--quick", "--out", str(out), "--models", str(models), "--seeds", "0",
                         "--ablations", "CE only", "--steps", "2"]) == 0
    table = (out / "report" / "repro_mini.md").read_text()
    row = next(line for line in table.splitlines() if line.startswith("| CE only |"))
    run = out / "repro_mini" / "ce_only_seed0"
    wer = json.loads((run / "eval" / "step2" / "asr_aura_heldout_voices" / "summary.json").read_text())["table"]["wer"]["all"]
    assert f"{wer:.1f} ± 0.0" in row and (out / "report" / "repro_mini.png").stat().st_size > 0


def test_audio_use_is_zero_exactly_when_every_row_hears_the_same_clip(real_demo, tmp_path):
    """Rolling the batch's audio changes nothing when all clips are one clip; with distinct clips the
    (barely trained) student's CE moves."""
    import shutil

    from aura_jax.evaluate.audio_use import audio_use

    out, _ = real_demo
    source = out / "corpus" / "asr_test_heldout_voices"
    same = tmp_path / "same"
    shutil.copytree(source, same)
    clips = sorted((same / "clips").iterdir())
    for clip in clips[1:]:
        shutil.copy(clips[0], clip)
    run = out / RUN
    flat = audio_use(str(run), str(same), batches=1, batch_size=2)
    assert flat["gap"] == 0.0 and flat["rows"] == 2 and flat["ce_own_audio"] > 0
    moved = audio_use(str(run), str(source), batches=1, batch_size=2)
    assert moved["gap"] != 0.0 and moved["ce_own_audio"] != flat["ce_own_audio"]
    report = json.loads((out / "report" / "results.json").read_text())
    assert set(report["audio_use"]) == set(GROUPS)


def test_sentences_grows_the_training_corpus_only(tmp_path):
    """`--sentences N` (demo and repro-mini) changes the training sentences' count and nothing else of
    the corpus, so runs on a larger corpus are scored on the same test sets."""
    from aura_jax.demo_real import REAL_SIZES, RealStages

    grown = RealStages(tmp_path, "full", sentences=9600).real
    default = REAL_SIZES["full"]
    assert grown.corpus == {**default.corpus, "num_train_sentences": 9600}
    assert default.corpus["num_train_sentences"] == 2400  # the shared table is not changed
    assert RealStages(tmp_path, "full").real == default
    args = cli.build_parser().parse_args(["repro-mini", "--sentences", "4800"])
    assert args.sentences == 4800


def test_full_demo_trains_on_the_fast_step_and_the_papers_step_is_one_override_away(tmp_path):
    """The full demo's step: the teacher on the clip's bucket and bf16 weight dots (issue 33, adopted
    on the 150-step, 2-seed comparison in docs/DEMO.md); the quick size (CI) stays exact f32."""
    from aura_jax.demo_real import RealStages

    def config(size, overrides=()):
        st = RealStages(tmp_path / size, size)
        st.corpus_dir.mkdir(parents=True, exist_ok=True)
        (st.corpus_dir / "corpus.json").write_text(json.dumps({"groups": {"trained": ["en-us"]}}))
        return st.config(tmp_path / size / "run", 0, list(overrides))

    fast = config("full")
    assert (fast.audio.teacher_frames, fast.model.dot_dtype) == ("bucket", "bfloat16")
    paper = config("full", ["audio.teacher_frames=3000", "model.dot_dtype="])
    assert (paper.audio.teacher_frames, paper.model.dot_dtype) == (3000, "")
    quick = config("quick")
    assert (quick.audio.teacher_frames, quick.model.dot_dtype) == (3000, "")
    args = cli.build_parser().parse_args(["demo", "--steps", "20", "audio.teacher_frames=3000", "model.dot_dtype="])
    assert args.overrides == ["audio.teacher_frames=3000", "model.dot_dtype="]
    (tmp_path / "user" / "corpus").mkdir(parents=True)
    (tmp_path / "user" / "corpus" / "corpus.json").write_text(json.dumps({"groups": {"trained": ["en-us"]}}))
    user = RealStages(tmp_path / "user", "full", overrides=tuple(args.overrides)).config(tmp_path / "run", 0)
    assert (user.audio.teacher_frames, user.model.dot_dtype) == (3000, "")  # the user's win over the size's


def test_demo_refuses_an_unknown_override_before_any_work(tmp_path):
    from aura_jax.config import ConfigError
    from aura_jax.demo_real import run_real_demo

    with pytest.raises(ConfigError, match="no_such_key"):
        run_real_demo(tmp_path / "demo", overrides=("audio.no_such_key=1",))
    assert not (tmp_path / "demo").exists()
