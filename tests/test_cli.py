"""The `aura-jax` command line: `check-parity` and `smoke`.

Commands run in-process through `aura_jax.cli.main` (stdout/stderr captured);
one subprocess call proves the installed console script works. Exit codes:
0 ok, 1 parity above tolerance, 2 a clear one-line error (no traceback).
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from aura_jax import cli
from aura_jax import random_checkpoints as rc

LINE = re.compile(r"^\s*(?P<name>.+?)\s+max_abs_diff=(?P<diff>\S+)\s+max_abs=(?P<scale>\S+)\s+scaled=(?P<value>\S+)$")
SUMMARY = re.compile(r"^max_scaled_diff=(?P<value>\S+) \((?P<kind>\w+), tolerance (?P<tol>\S+): (?P<verdict>OK|FAIL);")


def parse_parity(stdout: str):
    """(per-layer {name: diff}, summary match) from check-parity output."""
    per_layer, summary = {}, None
    for line in stdout.splitlines():
        if m := SUMMARY.match(line):
            assert summary is None, "two summary lines"
            summary = m
        elif m := LINE.match(line):
            per_layer[m["name"]] = float(m["value"])
    assert summary is not None, f"no line starting with max_scaled_diff= in:\n{stdout}"
    return per_layer, summary


def expected_layer_names(num_layers: int, logits: bool) -> list[str]:
    names = ["embeddings"] + [f"layer {i}" for i in range(1, num_layers)] + [f"layer {num_layers} (+final norm)"]
    return names + (["logits"] if logits else [])


# ---------------------------------------------------------------------------
# check-parity
# ---------------------------------------------------------------------------
def test_console_script_check_parity_succeeds_on_tiny_qwen2(tiny_qwen2_dir):
    script = Path(sys.executable).parent / "aura-jax"
    assert script.exists(), f"console script not installed next to {sys.executable}"
    env = dict(os.environ, JAX_PLATFORMS="cpu", HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    proc = subprocess.run([str(script), "check-parity", "--hf", str(tiny_qwen2_dir)], capture_output=True,
                          text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr
    _, summary = parse_parity(proc.stdout)
    assert float(summary["value"]) <= 1e-4
    assert summary["kind"] == "qwen2" and summary["verdict"] == "OK"
    assert "Traceback" not in proc.stderr


def test_check_parity_qwen2_reports_every_layer_and_fails_a_tolerance_below_float32_noise(tiny_qwen2_dir, capsys):
    assert cli.main(["check-parity", "--hf", str(tiny_qwen2_dir), "--tol", "1e-12"]) == 1
    per_layer, summary = parse_parity(capsys.readouterr().out)
    depth = json.loads((tiny_qwen2_dir / "config.json").read_text())["num_hidden_layers"]
    assert list(per_layer) == expected_layer_names(depth, logits=True)
    worst = float(summary["value"])
    assert worst == max(per_layer.values())
    assert 1e-12 < worst <= 1e-4  # float32 rounding noise: above 1e-12, within the default tolerance
    assert summary["kind"] == "qwen2" and summary["verdict"] == "FAIL"


def test_check_parity_whisper_passes_with_every_layer_reported(tiny_whisper_dir, capsys):
    assert cli.main(["check-parity", "--hf", str(tiny_whisper_dir)]) == 0
    per_layer, summary = parse_parity(capsys.readouterr().out)
    depth = json.loads((tiny_whisper_dir / "config.json").read_text())["encoder_layers"]
    assert list(per_layer) == expected_layer_names(depth, logits=False)
    assert float(summary["value"]) == max(per_layer.values()) <= 1e-4
    assert summary["kind"] == "whisper" and summary["verdict"] == "OK"


@pytest.mark.parametrize("make", ["missing", "llama"])
def test_check_parity_on_a_bad_directory_is_a_one_line_error_naming_it(tmp_path, tiny_qwen2_dir, capsys, make):
    bad = tmp_path / "not-a-model"
    if make == "llama":
        bad.mkdir()
        config = json.loads((tiny_qwen2_dir / "config.json").read_text())
        (bad / "config.json").write_text(json.dumps(dict(config, model_type="llama")))
    assert cli.main(["check-parity", "--hf", str(bad)]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert str(bad) in lines[0] and "check-parity" in lines[0]
    assert "Traceback" not in err


def test_check_parity_requires_hf_or_run_and_export(capsys):
    assert cli.main(["check-parity"]) == 2
    assert "--hf" in capsys.readouterr().err
    assert cli.main(["check-parity", "--run", "somewhere"]) == 2
    assert "--run and --exported go together" in capsys.readouterr().err


# ---------------------------------------------------------------------------
# smoke
# ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    """`aura-jax smoke` once into a fresh workdir: (exit code, stdout, workdir, config.json mtimes)."""
    workdir = tmp_path_factory.mktemp("smoke")
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = cli.main(["smoke", "--workdir", str(workdir)])
    configs = sorted(workdir.glob("*/config.json"))
    return code, out.getvalue(), workdir, {p: p.stat().st_mtime_ns for p in configs}


def smoke_metrics(stdout: str) -> dict[str, float]:
    return {k: float(v) for k, v in re.findall(r"(\w+)=(-?[\d.]+(?:e[-+]?\d+)?|nan|inf)(?=\s|$)", stdout)}


def test_smoke_builds_checkpoints_and_prints_finite_positive_loss_terms(smoke_run):
    code, stdout, workdir, mtimes = smoke_run
    assert code == 0
    assert len(mtimes) == 2, f"expected an LLM and a teacher checkpoint under {workdir}"
    metrics = smoke_metrics(stdout)
    for key in ("ce", "distill", "loss"):
        assert key in metrics, stdout
        assert math.isfinite(metrics[key]) and metrics[key] > 0, (key, stdout)
    # default weights ce_weight = distill_weight = 1: loss = ce + distill (printed to 4 decimals)
    assert abs(metrics["loss"] - (metrics["ce"] + metrics["distill"])) <= 2e-4


def test_smoke_reuses_the_checkpoints_in_its_workdir(smoke_run, monkeypatch, capsys):
    code, stdout, workdir, mtimes = smoke_run

    def no_rebuild(*args, **kwargs):
        raise AssertionError("the smoke run rebuilt a checkpoint that already exists")

    monkeypatch.setattr(rc, "make_qwen2", no_rebuild)
    monkeypatch.setattr(rc, "make_whisper", no_rebuild)
    assert cli.main(["smoke", "--workdir", str(workdir)]) == 0
    assert sorted(workdir.glob("*/config.json")) == sorted(mtimes)
    assert {p: p.stat().st_mtime_ns for p in mtimes} == mtimes
    # same checkpoints, same seed: the same loss terms
    again = smoke_metrics(capsys.readouterr().out)
    first = smoke_metrics(stdout)
    assert {k: again[k] for k in ("ce", "distill", "loss")} == {k: first[k] for k in ("ce", "distill", "loss")}


# ---------------------------------------------------------------------------
# infer / check-parity given something that is not an export (issue 12)
# ---------------------------------------------------------------------------
def test_infer_parser_is_the_modules_own():
    from aura_jax.torch import infer

    args = cli.build_parser().parse_args(["infer", "E", "--audio", "a.wav", "--variant", "peft"])
    assert (args.func, args.exported, args.variant, args.max_new_tokens) == (infer.infer_main, "E", "peft", 64)


def test_infer_and_check_parity_on_a_directory_that_is_not_an_export_is_one_line(tmp_path, capsys):
    run = tmp_path / "run"  # a training run directory: config.yaml, no aura_config.json
    run.mkdir()
    (run / "config.yaml").write_text("steps: 3\n")
    plain = tmp_path / "plain"
    plain.mkdir()
    missing = tmp_path / "nowhere"
    expected = {
        run: f"{run}: not an aura-jax export (no aura_config.json) but a training run directory; "
             f"export it with `aura-jax export {run} --out DIR`",
        plain: f"{plain}: not an aura-jax export (no aura_config.json); export a run with "
               f"`aura-jax export RUN_DIR --out DIR`",
        missing: f"{missing}: no such directory (give a directory written by `aura-jax export RUN_DIR --out DIR`)"}
    for target, message in expected.items():
        for argv in (["infer", str(target), "--audio", "clip.wav"],
                     ["check-parity", "--run", str(run), "--exported", str(target)]):
            assert cli.main(argv) == 2
            out, err = capsys.readouterr()
            assert out == "" and err == f"aura-jax {argv[0]}: error: {message}\n", err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["plain", "run"]
    assert (run / "config.yaml").read_text() == "steps: 3\n"


# ---------------------------------------------------------------------------
# key=value overrides anywhere on the line (issue 25)
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("argv, overrides", [
    (["aot", "C", "--target", "tpu-v5e-8", "model.llm=/d"], ["model.llm=/d"]),
    (["aot", "C", "steps=3", "--target", "h100x1", "model.llm=/d", "--inference", "seed=2"],
     ["steps=3", "model.llm=/d", "seed=2"]),  # in the order typed: a later key wins in load_config
    (["bench-train", "C", "--steps", "2", "batch_size=4"], ["batch_size=4"]),
    (["eval", "RUN", "--task", "asr", "--data", "D", "data.text_bucket=64"], ["data.text_bucket=64"]),
    (["export", "RUN", "--out", "O", "model.llm=/abs/llm"], ["model.llm=/abs/llm"]),
    (["smoke", "--workdir", "W", "steps=1"], ["steps=1"]),
    (["train", "C", "a.b=1", "c=x=y"], ["a.b=1", "c=x=y"]),
])
def test_overrides_are_accepted_after_options_for_every_command_that_takes_them(argv, overrides):
    args = cli.parse_command_line(cli.build_parser(), argv)
    assert args.overrides == overrides


@pytest.mark.parametrize("argv, bad", [
    (["aot", "C", "--target", "h100x1", "--bogus"], "--bogus"),
    (["aot", "C", "--target", "h100x1", "model.llm=/d", "stray"], "stray"),
    (["make-random", "--preset", "tiny", "--out", "O", "seed=1"], "seed=1"),  # takes no overrides
])
def test_anything_else_left_over_is_the_subcommands_usage_error(argv, bad, capsys):
    with pytest.raises(SystemExit) as e:
        cli.parse_command_line(cli.build_parser(), argv)
    err = capsys.readouterr().err
    assert e.value.code == 2 and f"aura-jax {argv[0]}: error: unrecognized arguments: {bad}" in err


def test_a_late_override_reaches_the_config(capsys):
    root = Path(__file__).resolve().parents[1]
    code = cli.main(["bench-train", str(root / "configs" / "tiny.yaml"), "--steps", "1", "no_such.key=1"])
    assert code == 2 and "no_such" in capsys.readouterr().err
