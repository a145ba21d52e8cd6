"""`aura-jax demo --quick` end to end (corpus → tiny LM → tiny Whisper → AuRA → eval → export →
PyTorch inference → report), its cache, and `aura-jax repro-mini`'s table."""

import contextlib
import io
import json
import re

import pytest

from aura_jax import cli
from aura_jax.synth import espeak_available

pytestmark = pytest.mark.skipif(not espeak_available(), reason="the demo corpus is spoken by espeak-ng")


@pytest.fixture(scope="module")
def quick_demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        assert cli.main(["demo", "--toy", "--quick", "--out", str(out)]) == 0
    return out, stdout.getvalue()


def test_quick_demo_runs_every_stage_and_writes_the_report(quick_demo):
    out, stdout = quick_demo
    report = (out / "report" / "results.md").read_text()
    assert report.splitlines()[2] == "![learning curve](learning_curve.png)"  # the picture first
    for section in ("## ASR on held-out voices", "## Spoken QA on held-out voices",
                    "## What AuRA does with each spoken question",
                    "## One held-out clip through the exported PyTorch model", "## Wall time", "## Reproduce"):
        assert section in report
    for row in ("| aura |", "| cascade |", "| AuRA (hears the question) |", "| cascade (Whisper → LM) |",
                "| gold transcript (base LM reads the question) |", "| AuRA reads the text question (LM + LoRA) |",
                "| answers correctly |", "| writes the question down instead of answering |"):
        assert row in report
    # the learning curve: every curve.every steps, both sets; the plot is drawn from it
    curve = [json.loads(l) for l in (out / "run" / "curve.jsonl").read_text().splitlines()]
    assert [r["step"] for r in curve] == [20, 40]
    assert all(0 <= r["heldout_wer"] and 0 <= r["training_wer"] for r in curve)
    assert (out / "report" / "learning_curve.png").stat().st_size > 0
    diagnosis = json.loads((out / "run" / "eval" / "sdqa_diagnosis" / "summary.json").read_text())
    assert sum(c["n"] for c in diagnosis["all"].values()) == diagnosis["n"] > 0
    # held-out voices are the QA columns; no training voice among them
    corpus = json.loads((out / "corpus" / "corpus.json").read_text())
    header = next(l for l in report.splitlines() if l.startswith("| system | EN_"))
    assert all(v.replace("-", "_").replace("+", "_").upper() in header for v in corpus["heldout_voices"])
    assert (out / "report" / "aura_loss.png").stat().st_size > 0
    assert (out / "report" / "pretraining_loss.png").stat().st_size > 0
    assert (out / "export" / "aura_config.json").exists()
    assert re.search(r"heard +: '.+'", stdout) and re.search(r"answer +: '.*'", stdout)


def test_a_second_run_reuses_every_stage(quick_demo, monkeypatch):
    import aura_jax.torch.export as export
    import aura_jax.training.train as train

    out, _ = quick_demo

    def redo(*args, **kwargs):
        raise AssertionError("a cached stage ran again")

    monkeypatch.setattr(train, "train", redo)
    monkeypatch.setattr(export, "export", redo)
    stamps = [out / "corpus" / "corpus.json", out / "models" / "lm" / "done.json",
              out / "models" / "whisper" / "done.json", out / "run" / "eval" / "sdqa_aura" / "summary.json"]
    before = [p.stat().st_mtime_ns for p in stamps]
    with contextlib.redirect_stdout(io.StringIO()):
        assert cli.main(["demo", "--toy", "--quick", "--out", str(out)]) == 0
    assert [p.stat().st_mtime_ns for p in stamps] == before


def test_repro_mini_tabulates_mean_and_std_over_seeds(quick_demo):
    out, _ = quick_demo
    with contextlib.redirect_stdout(io.StringIO()):
        assert cli.main(["repro-mini", "--toy", "--quick", "--out", str(out), "--seeds", "0", "1",
                         "--ablations", "CE only", "--steps", "2"]) == 0
    table = (out / "report" / "repro_mini.md").read_text()
    row = next(l for l in table.splitlines() if l.startswith("| CE only |"))
    number = r"[\d.]+ ± [\d.]+ \[[\d.]+, [\d.]+\]"
    assert re.fullmatch(rf"\| CE only \| {number} \| {number} \|", row)
    runs = sorted(p.name for p in (out / "repro_mini").iterdir())
    assert runs == ["ce_only_seed0", "ce_only_seed1"]
    assert "Beyond the paper" not in table
    for run in runs:  # each run's curve, at the same steps: what the plot's mean and band are made of
        steps = [json.loads(l)["step"] for l in (out / "repro_mini" / run / "curve.jsonl").read_text().splitlines()]
        assert steps == [1, 2]
    assert (out / "report" / "repro_mini.png").stat().st_size > 0
    assert "(no pair of the paper's orderings was run)" in table  # one variant: nothing to order


def test_a_variant_beyond_the_paper_is_judged_against_the_papers_recipe_at_the_same_budget(quick_demo):
    """`--variant NAME:k=v` adds a named recipe; the paper's recipe runs beside it with the same seeds and
    steps, shared overrides reach every run, and the report says which is better and whether the seeds
    separate them."""
    out, _ = quick_demo
    with contextlib.redirect_stdout(io.StringIO()):
        assert cli.main(["repro-mini", "optim.learning_rate=0.002", "--toy", "--quick", "--out", str(out),
                         "--seeds", "0", "--steps", "2", "--variant", "CE 0.5:loss.ce_weight=0.5"]) == 0
    table = (out / "report" / "repro_mini.md").read_text()
    assert re.search(r"^\| CE 0\.5 \| .* \|$", table, re.M) and re.search(r"^\| CE \+ distill \(cos \+ MSE\) \|", table, re.M)
    assert re.search(r"^- CE 0\.5 better than CE \+ distill \(cos \+ MSE\): \*\*(holds|does not hold)\*\*", table, re.M)
    assert "- CE 0.5: `loss.ce_weight=0.5`" in table and "Every run: `optim.learning_rate=0.002`." in table
    for slug in ("ce_0_5_seed0", "ce_distill_cos_mse_seed0"):
        config = (out / "repro_mini" / slug / "config.yaml").read_text()
        assert "learning_rate: 0.002" in config
    assert "ce_weight: 0.5" in (out / "repro_mini" / "ce_0_5_seed0" / "config.yaml").read_text()
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        assert cli.main(["repro-mini", "--toy", "--quick", "--out", str(out), "--variant",
                         "CE only:loss.ce_weight=0.5"]) == 2
    assert "--variant ['CE only']: a name of the paper's ablations" in err.getvalue()


def test_the_papers_orderings_are_judged_by_means_and_seed_overlap():
    from aura_jax.demo import orderings

    scores = {"CE + distill (cos + MSE)": [(40, 0), (42, 0)], "CE only": [(50, 0), (52, 0)],
              "distill only": [(41, 0), (60, 0)], "cosine only": [(45, 0)], "MSE only": [(44, 0)]}
    lines = orderings(scores)
    assert lines[0].startswith("- CE + distill (cos + MSE) better than CE only: **holds**")
    assert "the seeds do not overlap" in lines[0]
    assert "**holds**" in lines[1] and "the seeds overlap" in lines[1]  # 41 vs 60 straddles 40..42
    assert lines[-1].startswith("- cosine only better than MSE only: **does not hold** (45.0 vs 44.0")
