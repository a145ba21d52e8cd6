"""Start-up checks: every input exists and every output is writable before the audio scan; paths are
stored resolved; a resume's config is compared with the run's, key by key."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

import aura_jax.data.scan as scan
from aura_jax import cli
from aura_jax.config import ConfigError, load_config
from aura_jax.training.preflight import check_resume, config_changes

ROOT = Path(__file__).resolve().parents[2]
TINY = str(ROOT / "configs" / "tiny.yaml")


@pytest.fixture
def no_scan(monkeypatch):
    """The audio scan is the first expensive step: reaching it means a check came too late."""
    def scanned(self, refs):
        raise AssertionError("the audio scan ran")

    monkeypatch.setattr(scan.AudioScanner, "scan", scanned)


@pytest.fixture
def cv(tmp_path):
    root = tmp_path / "cv"
    (root / "clips").mkdir(parents=True)
    (root / "validated.tsv").write_text("path\tsentence\na.mp3\thello\n")
    return root


def train(capsys, *args) -> tuple[int, str]:
    code = cli.main(["train", *map(str, args)])
    return code, capsys.readouterr().err.strip()


def models(tiny_qwen2_dir, tiny_whisper_dir):
    return [f"model.llm={tiny_qwen2_dir}", f"model.teacher={tiny_whisper_dir}", "model.random_init=",
            "compilation_cache_dir="]


def test_an_empty_config_says_model_llm_is_not_set(tmp_path, capsys, no_scan):
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    code, err = train(capsys, empty, f"run_dir={tmp_path / 'run'}", "compilation_cache_dir=")
    assert code == 2 and err == ("aura-jax train: error: model.llm is not set: the Hugging Face Qwen2 "
                                 "directory of the frozen LLM")


@pytest.mark.parametrize("override,message", [
    ("model.llm={tmp}/nowhere", "model.llm={tmp}/nowhere: does not exist (a Hugging Face model directory)"),
    ("model.teacher={tmp}", "model.teacher={tmp}: has no config.json (a Hugging Face model directory)"),
    ("data.speech.0.path={tmp}/no-cv", "data.speech.0.path={tmp}/no-cv: no such file or directory"),
    ("data.speech.0.tsv=test.tsv", "data.speech.0: {tmp}/cv/test.tsv not found (data.speech.0.tsv='test.tsv')"),
    ("data.text=[{{type: qa_jsonl, path: {tmp}}}]", "data.text.0.path={tmp}: a qa_jsonl source is a file"),
    ("run_dir={tmp}/cv/validated.tsv/run", "run_dir={tmp}/cv/validated.tsv/run: not writable"),
    ("data.cache_dir={tmp}/cv/validated.tsv", "data.cache_dir={tmp}/cv/validated.tsv: is a file, not a directory"),
    ("curve.sets={{dev: {tmp}/nope}}", "curve.sets.dev={tmp}/nope: no such file or directory"),
    ("optim.schedule=linear", "optim.schedule='linear': use constant or cosine"),
])
def test_inputs_and_outputs_are_checked_before_the_scan(override, message, tiny_qwen2_dir, tiny_whisper_dir, cv,
                                                        tmp_path, capsys, no_scan):
    code, err = train(capsys, TINY, *models(tiny_qwen2_dir, tiny_whisper_dir), f"run_dir={tmp_path / 'run'}",
                      f"data.speech=[{{type: commonvoice, path: '{cv}'}}]", "data.text=[]",
                      override.format(tmp=tmp_path))
    assert code == 2 and "\n" not in err
    assert err.startswith("aura-jax train: error: " + message.format(tmp=tmp_path)), err


def test_paths_are_stored_resolved_before_the_scan(tiny_qwen2_dir, tiny_whisper_dir, cv, tmp_path, monkeypatch,
                                                  capsys, no_scan):
    monkeypatch.chdir(tmp_path)
    rel = lambda p: os.path.relpath(p, tmp_path)
    with pytest.raises(AssertionError, match="the audio scan ran"):  # config.yaml is written first
        cli.main(["train", TINY, f"model.llm={rel(tiny_qwen2_dir)}", f"model.teacher={rel(tiny_whisper_dir)}",
                  "model.random_init=", "compilation_cache_dir=", "run_dir=run", "data.cache_dir=cache",
                  "data.speech=[{type: commonvoice, path: cv}]", "data.text=[]"])
    saved = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    assert saved["model"]["llm"] == str(Path(tiny_qwen2_dir).absolute())
    assert saved["model"]["teacher"] == str(Path(tiny_whisper_dir).absolute())
    assert saved["run_dir"] == str(tmp_path / "run") and saved["data"]["cache_dir"] == str(tmp_path / "cache")
    assert saved["data"]["speech"][0]["path"] == str(cv)


# ---------------------------------------------------------------------------
# check_resume: which keys a resume may change
# ---------------------------------------------------------------------------
def saved_and(*overrides):
    return load_config(TINY).to_dict(), load_config(TINY, list(overrides))


def test_execution_logging_and_cadence_may_change():
    saved, new = saved_and("steps=20", "log_every=5", "checkpoint_every=2", "mesh.fsdp=2", "grad_accum_steps=2",
                           "model.remat=full", "data.worker_threads=1", "sharding_rules.embed=null")
    changes = check_resume(saved, new, "RUN")
    assert set(changes) == {"steps", "log_every", "checkpoint_every", "mesh.fsdp", "grad_accum_steps",
                            "model.remat", "data.worker_threads", "sharding_rules"}
    assert changes["steps"] == (8, 20)


def test_what_shapes_the_state_or_the_data_is_refused_with_every_key_listed():
    saved, new = saved_and("lora.rank=4", "batch_size=2", "data.speech.0.num_rows=8", "seed=1")
    with pytest.raises(ConfigError) as e:
        check_resume(saved, new, "RUN")
    msg = str(e.value)
    assert msg.startswith("RUN: resuming with a config that differs from the run's config.yaml: ")
    for change in ("lora.rank: 8 → 4", "batch_size: 4 → 2", "seed: 0 → 1", "data.speech: "):
        assert change in msg, change
    assert "start a new run_dir" in msg and "resume_allow" not in msg


def test_an_optimisation_change_needs_resume_allow():
    saved, new = saved_and("optim.learning_rate=1e-4")
    with pytest.raises(ConfigError, match=r"optim.learning_rate: 0.003 → 0.0001.*add "
                                          r"resume_allow=\[optim.learning_rate\]"):
        check_resume(saved, new, "RUN")
    _, allowed = saved_and("optim.learning_rate=1e-4", "resume_allow=[optim.learning_rate]")
    assert set(check_resume(saved, allowed, "RUN")) == {"optim.learning_rate", "resume_allow"}
    _, not_shaping = saved_and("lora.rank=4", "resume_allow=[lora.rank]")  # cannot be allowed
    with pytest.raises(ConfigError, match="lora.rank: 8 → 4"):
        check_resume(saved, not_shaping, "RUN")


def test_no_difference_no_changes():
    saved, new = saved_and()
    assert config_changes(saved, new) == {} and check_resume(saved, new, "RUN") == {}


def test_with_a_cosine_schedule_a_longer_run_needs_resume_allow_and_curve_settings_are_free():
    saved = load_config(TINY, ["optim.schedule=cosine"]).to_dict()
    longer = load_config(TINY, ["optim.schedule=cosine", "steps=20"])
    with pytest.raises(ConfigError, match=r"steps: 8 → 20.*add resume_allow=\[steps\]"):
        check_resume(saved, longer, "RUN")  # the cosine would silently stretch mid-run
    allowed = load_config(TINY, ["optim.schedule=cosine", "steps=20", "resume_allow=[steps]"])
    assert set(check_resume(saved, allowed, "RUN")) == {"steps", "resume_allow"}
    curve = load_config(TINY, ["optim.schedule=cosine", "curve.every=5", "curve.patience=2"])
    assert set(check_resume(saved, curve, "RUN")) == {"curve.every", "curve.patience"}  # evaluation only
