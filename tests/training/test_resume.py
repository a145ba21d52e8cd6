"""Resuming never loses work and never lies: a changed config is refused before anything is touched,
a run already at `steps` says it is complete, a damaged latest checkpoint falls back to the newest one
that restores (moved aside, not deleted), and export refuses a checkpoint its config does not describe."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from aura_jax import cli
from aura_jax.training.metrics import read_metrics

ROOT = Path(__file__).resolve().parents[2]
TINY = str(ROOT / "configs" / "tiny.yaml")


@pytest.fixture(scope="module")
def base(tiny_qwen2_dir, tiny_whisper_dir, tmp_path_factory):
    shared = tmp_path_factory.mktemp("resume-shared")
    return [f"model.llm={tiny_qwen2_dir}", f"model.teacher={tiny_whisper_dir}", f"data.cache_dir={shared / 'data'}",
            f"compilation_cache_dir={shared / 'xla'}", "checkpoint_every=2"]


def train_subprocess(run_dir, base, *overrides):
    env = dict(os.environ, JAX_PLATFORMS="cpu", HF_HUB_OFFLINE="1")
    return subprocess.run([sys.executable, "-m", "aura_jax.cli", "train", TINY, f"run_dir={run_dir}", *base,
                           *overrides], env=env, capture_output=True, text=True, timeout=300, cwd=ROOT)


@pytest.fixture(scope="module")
def finished(base, tmp_path_factory):
    """A 4-step tiny run with checkpoints at steps 2 and 4."""
    run_dir = tmp_path_factory.mktemp("finished")
    proc = train_subprocess(run_dir, base, "steps=4")
    assert proc.returncode == 0, proc.stderr[-3000:]
    return run_dir, proc


@pytest.fixture
def copy(finished, tmp_path):
    run_dir = tmp_path / "run"
    shutil.copytree(finished[0], run_dir)
    return run_dir


def snapshot(run_dir: Path) -> dict:
    """Every file of a run with its bytes (what "nothing was touched" means)."""
    return {str(p.relative_to(run_dir)): p.read_bytes() for p in sorted(run_dir.rglob("*")) if p.is_file()}


def train_here(capsys, run_dir, base, *overrides) -> tuple[int, str, str]:
    code = cli.main(["train", TINY, f"run_dir={run_dir}", *base, *overrides])
    out, err = capsys.readouterr()
    return code, out, err.strip()


def test_training_ends_by_saying_where_its_outputs_are(finished):
    run_dir, proc = finished
    assert f"trained to step 4 of 4. Outputs in {run_dir}: checkpoints/" in proc.stdout
    assert f"aura-jax export {run_dir} --out" in proc.stdout


def test_a_changed_config_is_refused_before_anything_is_touched(copy, base, capsys):
    before = snapshot(copy)
    code, _, err = train_here(capsys, copy, base, "steps=6", "lora.rank=4")
    assert code == 2 and "\n" not in err
    assert err.startswith(f"aura-jax train: error: {copy}: resuming with a config that differs from the run's "
                          f"config.yaml: lora.rank: 8 → 4.")
    assert "start a new run_dir" in err
    assert snapshot(copy) == before  # config.yaml (rank 8) and the checkpoints are as they were


def test_steps_below_the_latest_checkpoint_is_refused_and_a_finished_run_says_so(copy, base, capsys):
    before = snapshot(copy)
    code, _, err = train_here(capsys, copy, base, "steps=3")
    assert code == 2 and err == (f"aura-jax train: error: steps=3 is below the run's latest checkpoint, step 4 in "
                                 f"{copy / 'checkpoints'}: a run cannot go back. Raise steps to continue it, or "
                                 f"use `aura-jax export/eval --step` for an earlier checkpoint")
    code, out, _ = train_here(capsys, copy, base, "steps=4")
    assert code == 0 and out.strip() == f"{copy}: already complete (step 4 of 4); raise steps=N to train further"
    assert snapshot(copy) == before


def test_a_damaged_latest_checkpoint_falls_back_and_retrains_exactly(finished, copy, base):
    """Step 4's state has a truncated array file: the resume says so, moves step 4 aside, restores step 2
    and trains steps 3-4 again to the same losses (bit-exact resume), then on to 6."""
    chunks = sorted((copy / "checkpoints" / "4" / "state").rglob("d/*"), key=lambda p: p.stat().st_size)
    with open(chunks[-1], "r+b") as f:
        f.truncate(chunks[-1].stat().st_size // 2)
    proc = train_subprocess(copy, base, "steps=6")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"checkpoint {copy / 'checkpoints' / '4'}: does not restore (" in proc.stdout
    assert "resumed from step 2, the newest checkpoint that restores; moved the unrestorable step(s) [4] to " \
           f"{copy / 'checkpoints_unrestorable'}" in proc.stdout
    assert "Traceback" not in proc.stdout + proc.stderr
    aside = list((copy / "checkpoints_unrestorable").iterdir())
    assert len(aside) == 1 and aside[0].name.startswith("4-") and (aside[0] / "state").is_dir()
    assert sorted(int(p.name) for p in (copy / "checkpoints").iterdir() if p.name.isdigit()) == [2, 4, 6]
    original, redone = ({r["step"]: r for r in read_metrics(d / "metrics.jsonl")} for d in (finished[0], copy))
    for step in (3, 4):
        assert redone[step]["batch_id"] == original[step]["batch_id"]
        np.testing.assert_allclose(redone[step]["loss"], original[step]["loss"], rtol=1e-6)


def test_without_fallback_a_damaged_checkpoint_is_one_error_and_nothing_moves(copy, base, capsys):
    (copy / "checkpoints" / "4" / "state" / "_METADATA").write_text("")
    before = snapshot(copy)
    code, _, err = train_here(capsys, copy, base, "steps=6", "checkpoint_fallback=false")
    assert code == 2 and "\n" not in err
    assert err.startswith(f"aura-jax train: error: {copy / 'checkpoints' / '4'}: ")
    assert "Set checkpoint_fallback=true to resume from the newest checkpoint that restores (have steps [2, 4])" \
        in err
    after = snapshot(copy)
    after.pop("resumes.jsonl")  # the attempt is logged; nothing else changes
    assert after == before
    assert not (copy / "checkpoints_unrestorable").exists()


def test_export_and_eval_restore_check_the_checkpoint_against_the_config(copy):
    from aura_jax.config import ConfigError
    from aura_jax.hf import CheckpointError
    from aura_jax.training.checkpoint import restore_student

    config_yaml = copy / "config.yaml"
    config_yaml.write_text(config_yaml.read_text().replace("rank: 8", "rank: 4"))
    with pytest.raises(ConfigError, match=r"checkpoint step 4 does not match .*config.yaml: params "
                                          r"llm.layers.0.mlp.down_proj.lora_a is \[128, 8\] in the checkpoint, "
                                          r"\[128, 4\] by the config; .*; and 25 more$"):
        restore_student(copy)
    config_yaml.write_text(config_yaml.read_text().replace("rank: 4", "rank: 8"))
    (copy / "checkpoints" / "4" / "state" / "_METADATA").write_text("")
    with pytest.raises(CheckpointError, match=r"checkpoints/4: does not restore \(.*\); pass --step 2 for the "
                                              r"next older one \(have \[2, 4\]\)"):
        restore_student(copy)


def test_after_a_failed_restore_only_the_closed_event_loop_error_is_dropped(monkeypatch, capsys):
    """A straggling orbax reader can raise RuntimeError('Event loop is closed') after a failed restore
    returned: that one error is dropped from the hooks, any other still prints."""
    import sys
    import threading
    import traceback

    from aura_jax.training.checkpoint import _drop_late_closed_loop_errors

    monkeypatch.setattr(sys, "excepthook", lambda kind, value, tb: traceback.print_exception(kind, value, tb))
    monkeypatch.setattr(threading, "excepthook", threading.__excepthook__)
    monkeypatch.setattr(sys, "unraisablehook", sys.__unraisablehook__)
    _drop_late_closed_loop_errors()
    _drop_late_closed_loop_errors()  # once is enough: no second wrapper
    closed, other = RuntimeError("Event loop is closed"), RuntimeError("something else")
    sys.excepthook(RuntimeError, closed, None)
    thread = threading.Thread(target=lambda: (_ for _ in ()).throw(closed))
    thread.start()
    thread.join()
    assert "Event loop is closed" not in capsys.readouterr().err
    sys.excepthook(RuntimeError, other, None)
    assert "something else" in capsys.readouterr().err
