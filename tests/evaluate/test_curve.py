"""Learning curves (`curve.*`): during training the student transcribes fixed ASR clips every N steps;
what the curve records is what `aura-jax eval --task asr` measures on the saved checkpoint; a plateau
stops the run (saved), and a stopped run stays stopped."""

import json
import os

import pytest
import soundfile as sf

from aura_jax.config import ConfigError, load_config
from aura_jax.evaluate.curve import LearningCurve, plateau, read_curve, stopped_on_plateau
from aura_jax.synth import espeak_available, synthesize

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SENTENCES = ["anna lives in paris", "tom has a dog", "the train leaves at ten"]


@pytest.fixture(scope="module")
def asr_dir(tmp_path_factory):
    """Three spoken sentences in the CommonVoice layout (clips/ + validated.tsv)."""
    if not espeak_available():
        pytest.skip("needs espeak-ng")
    root = tmp_path_factory.mktemp("asr")
    (root / "clips").mkdir()
    rows = ["path\tsentence"]
    for i, text in enumerate(SENTENCES):
        sf.write(root / "clips" / f"c{i}.wav", synthesize(text, voice="en-us"), 16000)
        rows.append(f"c{i}.wav\t{text}")
    (root / "validated.tsv").write_text("\n".join(rows) + "\n")
    return root


def _config(run_dir, llm, whisper, asr, *extra):
    return load_config(os.path.join(ROOT, "configs", "tiny.yaml"), [
        f"model.llm={llm}", f"model.teacher={whisper}", f"run_dir={run_dir}", "optim.warmup_steps=0",
        "optim.learning_rate=1e-2", "compilation_cache_dir=", f"data.cache_dir={run_dir}-data",
        "curve.every=2", f"curve.sets={{heldout: {asr}}}", "curve.limit=3", "curve.batch_size=4",
        "curve.max_new_tokens=4", *extra])


def test_the_curve_at_the_last_step_is_what_eval_measures_on_the_saved_checkpoint(
        tiny_qwen2_dir, tiny_whisper_dir, asr_dir, tmp_path, monkeypatch):
    import jax
    import numpy as np
    from flax import nnx

    import aura_jax.evaluate.harness as harness
    from aura_jax.evaluate.harness import run_eval
    from aura_jax.models.layers import Trainable
    from aura_jax.training.checkpoint import restore_student
    from aura_jax.training.train import train

    seen = []  # the trainable weights of the model each curve evaluation decodes with
    decode = harness.aura_answers
    flat = lambda model: {jax.tree_util.keystr(p): np.asarray(x)
                          for p, x in jax.tree_util.tree_leaves_with_path(nnx.state(model, Trainable))}
    monkeypatch.setattr(harness, "aura_answers", lambda model, *a: seen.append(flat(model)) or decode(model, *a))
    run = tmp_path / "run"
    train(_config(run, tiny_qwen2_dir, tiny_whisper_dir, asr_dir, "steps=4", "checkpoint_every=2"), curve=LearningCurve)
    monkeypatch.undo()
    for step, weights in ((2, seen[0]), (4, seen[-1])):  # the model as it is at that step, not another
        _, saved, _ = restore_student(str(run), step, ["model.random_init="])
        saved = flat(saved)  # the student's trainables (patch embedding, LoRA); no distillation heads
        assert any("lora" in k for k in saved) and set(saved) <= set(weights)
        for key, value in saved.items():
            np.testing.assert_array_equal(weights[key], value, err_msg=f"step {step}: {key}")
    rows = read_curve(run)
    assert [r["step"] for r in rows] == [2, 4]
    assert rows[-1]["heldout_example"]["reference"] == SENTENCES[0]
    summary = run_eval(str(run), "asr", str(asr_dir), batch_size=4, max_new_tokens=4, progress=False,
                       out=str(tmp_path / "eval"))
    assert summary["table"]["wer"]["all"] == pytest.approx(rows[-1]["heldout_wer"], abs=1e-9)
    first = json.loads((tmp_path / "eval" / "predictions.jsonl").read_text().splitlines()[0])
    assert first["prediction"] == rows[-1]["heldout_example"]["prediction"]


def test_a_plateau_stops_the_run_with_a_checkpoint_and_a_stopped_run_stays_stopped(
        tiny_qwen2_dir, tiny_whisper_dir, asr_dir, tmp_path):
    from aura_jax.training.train import _latest_step, train

    run = tmp_path / "run"
    # min_delta 1000 points: the second evaluation can never count as progress
    config = _config(run, tiny_qwen2_dir, tiny_whisper_dir, asr_dir, "steps=10", "curve.patience=1",
                     "curve.min_delta=1000")
    summary = train(config, curve=LearningCurve)
    assert summary["plateau"] and summary["final_step"] == 4 and _latest_step(run) == 4
    assert stopped_on_plateau(run, config)
    again = train(config, curve=LearningCurve)
    assert again["plateau"] and again["final_step"] == 4 and _latest_step(run) == 4
    assert [r["step"] for r in read_curve(run)] == [2, 4]


def test_a_curve_asked_for_without_an_evaluator_is_refused_before_any_work(tmp_path):
    from aura_jax.training.train import train

    config = _config(tmp_path / "run", tmp_path / "missing-llm", tmp_path / "missing-whisper", tmp_path, "steps=2")
    with pytest.raises(ConfigError, match=r"curve.every=2: no learning-curve evaluator.*LearningCurve"):
        train(config)  # before the missing model directories are even looked at


def test_plateau_means_no_gain_of_min_delta_in_the_last_patience_evaluations():
    assert not plateau([90, 80, 70], patience=2, min_delta=1)
    assert not plateau([90, 80], patience=2, min_delta=1)  # too few evaluations to judge
    assert plateau([90, 60, 59.5, 60.2], patience=2, min_delta=1)  # best of the last two: 59.5 > 60 - 1
    assert not plateau([90, 60, 58.9, 61], patience=2, min_delta=1)
    assert not plateau([90, 90, 90], patience=0, min_delta=1)  # patience 0: never stop


def test_a_resumed_curve_keeps_the_evaluations_up_to_the_checkpoint(tmp_path):
    from aura_jax.evaluate.curve import LearningCurve

    (tmp_path / "curve.jsonl").write_text("".join(json.dumps({"step": s, "heldout_wer": 50.0}) + "\n"
                                                  for s in (2, 4, 6)))
    curve = LearningCurve.__new__(LearningCurve)  # no data needed to resume
    curve.path, curve.history = tmp_path / "curve.jsonl", []
    curve.resume(4)
    assert [r["step"] for r in curve.history] == [2, 4] and [r["step"] for r in read_curve(tmp_path)] == [2, 4]


def test_curve_settings_are_checked_with_the_key_named(tiny_qwen2_dir, tiny_whisper_dir, asr_dir, tmp_path):
    from aura_jax.evaluate.curve import LearningCurve

    config = _config(tmp_path / "run", tiny_qwen2_dir, tiny_whisper_dir, asr_dir, "curve.sets={}")
    with pytest.raises(ConfigError, match="curve.sets is empty"):
        LearningCurve(config, tokenizer=None)
    config = _config(tmp_path / "run", tiny_qwen2_dir, tiny_whisper_dir, asr_dir, "curve.limit=0")
    with pytest.raises(ConfigError, match="limit=0"):
        LearningCurve(config, tokenizer=None)
