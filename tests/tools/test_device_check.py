"""The prepared GPU check works before it meets a GPU: `device_check.sh --small` runs every stage
end to end on this CPU, and the sweep's logic (stop at out-of-memory, time boxes, a killed run keeps
what finished) holds."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from aura_jax.tools import device_check as dc

ROOT = Path(__file__).resolve().parents[2]
STAGES = ["env", "models", "train_step", "run", "infer", "variants", "jax_gen"]


def test_small_runs_every_stage_on_the_cpu(tmp_path):
    out = tmp_path / "out"
    env = dict(os.environ, PYTHON=sys.executable, DEVICE_CHECK_WORK=str(tmp_path / "work"), JAX_PLATFORMS="cpu")
    proc = subprocess.run(["bash", "scripts/device_check.sh", "--small", "--out", str(out)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert sorted(p.name for p in out.iterdir()) == ["log.txt", "results.jsonl", "summary.json", "summary.md"]
    results = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert all(r["ok"] for r in results), [r for r in results if not r["ok"]]
    assert [s for s in STAGES if any(r["stage"] == s for r in results)] == STAGES
    steps = [r for r in results if r["stage"] == "train_step"]
    assert [(r["batch"], r["attention"], r["remat"]) for r in steps] == [(2, "xla", "none"),
                                                                          (2, "dot_product", "dots_saveable")]
    assert all(r["step_time_median_s"] > 0 and r["xla_memory_total_gib"] > 0 for r in steps)
    infer = next(r for r in results if r["stage"] == "infer")
    assert set(infer["systems"]) == {"AuRA", "Cascade"} and infer["n"] == 3
    assert [r["part"] for r in results if r["stage"] == "run"] == ["train", "export", "export adapter"]
    variants = next(r for r in results if r["stage"] == "variants")  # the audio-only export beside the merged
    assert variants["against"] == "merged-in-memory" and set(variants["ratio"]) == {"1", "8"}
    assert all(variants["sides"][s][b]["decode_s_per_token"] > 0 and variants["sides"][s][b]["peak_extra_gb"]
               is not None for s in ("adapter", "merged") for b in ("1", "8"))
    gen = next(r for r in results if r["stage"] == "jax_gen")
    assert gen["batch"] == 16 and gen["samples_per_s"] > 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["results"] == results
    md = (out / "summary.md").read_text()
    assert "| 2 | dot_product | dots_saveable |" in md and "| AuRA |" in md and "stages failed: 0" in md
    assert "| 8 | adapter / merged |" in md


@pytest.fixture
def check(tmp_path, monkeypatch):
    """A full-plan Check whose bench-train calls are scripted: (batch, attention, remat) → outcome."""
    c = dc.Check(tmp_path / "out", tmp_path / "work", dc.FULL, sys.executable)
    c.begin("train_step")
    calls = []

    def fake_cli(args, timeout):
        batch = int(next(a for a in args if a.startswith("batch_size=")).split("=")[1])
        attention = next(a for a in args if a.startswith("model.attention=")).split("=")[1]
        remat = next(a for a in args if a.startswith("model.remat=")).split("=")[1]
        calls.append((batch, attention, remat))
        if batch >= c.oom_from:
            return 1, "jaxlib.xla_extension.XlaRuntimeError: RESOURCE_EXHAUSTED: Out of memory allocating", 3.0
        out_json = Path(args[args.index("--json") + 1])
        out_json.parent.mkdir(parents=True, exist_ok=True)
        out_json.write_text(json.dumps({
            "step_time_median_s": 1.0 / batch, "step_time_min_s": 0.9 / batch, "examples_per_s": batch ** 2,
            "tokens_per_s": 364.0 * batch ** 2, "achieved_tflops": 100.0, "mfu": 0.1, "peak_tflops_per_device": 989.0,
            "compile_s": 30.0, "shapes": {"seq_len": 363},
            "memory_bytes": {"argument": 2**30, "output": 2**29, "temp": 2**31, "alias": 2**29},
            "device_memory": {"peak_gib": 3.5, "limit_gib": 130.0}}))
        return 0, "ok", 5.0

    c.cli, c.calls, c.oom_from = fake_cli, calls, 10**9
    return c


def test_the_sweep_stops_at_the_first_out_of_memory_then_tries_the_options_there(check):
    check.oom_from = 32
    check.train_step()
    assert check.calls == [(8, "xla", "none"), (16, "xla", "none"), (32, "xla", "none"), (16, "dot_product", "none"),
                           (16, "xla", "dots_saveable"), (16, "dot_product", "dots_saveable")]
    oom = next(r for r in check.results if r["batch"] == 32)
    assert oom["ok"] is False and oom["oom"] is True
    fitted = next(r for r in check.results if r["batch"] == 16 and r["remat"] == "none" and r["attention"] == "xla")
    assert fitted["xla_memory_total_gib"] == 3.0 and fitted["measured_peak_gib"] == 3.5
    lines = (check.out / "results.jsonl").read_text().splitlines()
    assert len(lines) == 6  # every combination written as it ended
    md = dc.format_markdown({"wall_s": 1.0, "results": check.results})
    assert "| 32 | xla | none | out of memory |" in md and "stages failed: 0" in md


def test_a_spent_time_box_skips_what_is_left_and_says_so(check, monkeypatch):
    monkeypatch.setattr(check, "remaining", lambda stage: 5.0)
    check.train_step()
    assert check.calls == []
    assert check.results[0]["skipped"] == "stage time box spent"


def _closure_beyond(device: set[str], roots: list[str], force: set[str]) -> set[str]:
    """Names of the installed distributions our roots need (markers read for Python 3.12 on Linux) that
    `device` lacks; a package the device has is taken with its own needs, except those in `force`."""
    import importlib.metadata as md
    import re

    from packaging.markers import Marker

    norm = lambda n: re.sub(r"[-_.]+", "-", n).lower()
    env = {"python_version": "3.12", "python_full_version": "3.12.3", "sys_platform": "linux",
           "platform_system": "Linux", "platform_machine": "x86_64", "os_name": "posix", "extra": ""}
    need, seen = set(), set()

    def walk(name):
        n = norm(name)
        if n in seen:
            return
        seen.add(n)
        if n in device and n not in force:
            return
        need.add(n)
        for req in md.distribution(name).requires or []:
            spec, _, marker = req.partition(";")
            if marker and not Marker(marker).evaluate(env):
                continue
            walk(re.match(r"[A-Za-z0-9_.\-]+", spec.strip()).group(0))

    for root in roots:
        walk(root)
    return need


def test_wheels_for_the_gpu_machine_are_exactly_what_it_lacks():
    """scripts/device_wheels.sh carries each package the project's requirements need that the machine's
    image (scripts/device_packages.txt) lacks, once, pinned — plus flax/optax/orbax/chex at our versions."""
    import re
    import tomllib

    norm = lambda n: re.sub(r"[-_.]+", "-", n).lower()
    text = (ROOT / "scripts" / "device_wheels.sh").read_text()
    block = text[text.index("WHEELS=(") + len("WHEELS=("):text.index(")\n", text.index("WHEELS=("))]
    pins = block.split()
    carried = [norm(p.split("==")[0]) for p in pins]
    assert all("==" in p for p in pins) and len(set(carried)) == len(carried)
    device = {norm(line.strip()) for line in (ROOT / "scripts" / "device_packages.txt").read_text().splitlines()
              if line.strip() and not line.startswith("#")}
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    roots = [re.match(r"[A-Za-z0-9_.\-]+", d).group(0) for d in deps]
    pinned = {"flax", "optax", "orbax-checkpoint", "chex"}
    assert set(carried) == _closure_beyond(device, roots, pinned) - {"jax", "jaxlib"}
