"""launch/: every script parses (bash -n), and the `aura-jax train` command each one builds — run
with stub gcloud / srun / scontrol / aura-jax that only record their arguments — names config keys
that exist and values that validate (aura_jax.config.load_config on the paper's config)."""

from __future__ import annotations

import os
import shlex
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LAUNCH = ROOT / "launch"
CONFIG = "configs/aura_qwen2.5-7b_whisper-large-v3.yaml"
SCRIPTS = ["tpu_pod.sh", "slurm_gpu.sbatch", "single_host_gpu.sh"]
USER_VARS = dict(LLM="/m/qwen", TEACHER="/m/whisper", SPEECH="/d/cv", TEXT="/d/qa.jsonl", RUN_DIR="/ckpt/aura")


@pytest.mark.parametrize("name", SCRIPTS)
def test_bash_syntax(name):
    subprocess.run(["bash", "-n", str(LAUNCH / name)], check=True)


@pytest.fixture
def stubs(tmp_path):
    """gcloud / srun / scontrol / aura-jax stand-ins that append their argv (one JSON-free line each) to a log."""
    bin_dir, log = tmp_path / "bin", tmp_path / "calls.log"
    bin_dir.mkdir()
    record = f'for a in "$@"; do printf "%s\\0" "$a" >> {log}; done; printf "\\n\\0" >> {log}\n'
    (bin_dir / "gcloud").write_text(f"#!/usr/bin/env bash\nprintf 'gcloud\\0' >> {log}\n{record}")
    (bin_dir / "aura-jax").write_text(f"#!/usr/bin/env bash\nprintf 'aura-jax\\0' >> {log}\n{record}")
    (bin_dir / "scontrol").write_text("#!/usr/bin/env bash\nprintf 'node-a\\nnode-b\\n'\n")
    # srun: drop its own options, run the task as SLURM_PROCID=1
    (bin_dir / "srun").write_text('#!/usr/bin/env bash\nwhile [[ "$1" == --* ]]; do shift; done\n'
                                  'SLURM_PROCID=1 exec "$@"\n')
    for f in bin_dir.iterdir():
        f.chmod(0o755)
    env = dict(os.environ, PATH=f"{bin_dir}:{os.environ['PATH']}", AURA_JAX=str(bin_dir / "aura-jax"),
               SLURM_JOB_NODELIST="node-[a-b]", SLURM_NTASKS="2", TPU_NAME="v5p-64", ZONE="us-east5-a",
               REPO_URL="https://example.invalid/aura_jax.git", HOME=str(tmp_path), **USER_VARS)
    return env, log


def calls(log: Path) -> list[list[str]]:
    out, current = [], []
    for item in log.read_text().split("\0"):
        if item == "\n":
            out.append(current)
            current = []
        elif item:
            current.append(item)
    return out


def check_train_args(args: list[str]) -> dict:
    """`train CONFIG k=v ...` → the validated config (unknown keys or bad values raise)."""
    from aura_jax.config import load_config

    assert args[0] == "train" and args[1] == CONFIG, args
    overrides = args[2:]
    config = load_config(ROOT / args[1], overrides)
    return {"config": config, "overrides": overrides}


def test_single_host_gpu(stubs):
    env, log = stubs
    subprocess.run(["bash", str(LAUNCH / "single_host_gpu.sh"), "steps=10"], env=env, check=True, cwd=ROOT)
    (argv,) = calls(log)
    got = check_train_args(argv[1:])
    c = got["config"]
    assert (c.model.llm, c.model.teacher, c.run_dir, c.steps) == ("/m/qwen", "/m/whisper", "/ckpt/aura", 10)
    assert c.data.speech[0].path == "/d/cv" and c.data.text[0].path == "/d/qa.jsonl"
    assert not c.distributed.enabled and c.compilation_cache_dir


def test_slurm_gpu(stubs):
    env, log = stubs
    subprocess.run(["bash", str(LAUNCH / "slurm_gpu.sbatch")], env=env, check=True, cwd=ROOT)
    (argv,) = calls(log)
    c = check_train_args(argv[1:])["config"]
    d = c.distributed
    assert (d.coordinator_address, d.num_processes, d.process_id) == ("node-a:12355", 2, 1)


def test_tpu_pod(stubs):
    env, log = stubs
    subprocess.run(["bash", str(LAUNCH / "tpu_pod.sh"), "mesh.fsdp=-1"], env=env, check=True, cwd=ROOT)
    setup, train = calls(log)
    for call in (setup, train):
        assert call[:5] == ["gcloud", "compute", "tpus", "tpu-vm", "ssh"] and "--worker=all" in call
    assert "scripts/setup_env.sh" in setup[setup.index("--command") + 1]
    command = shlex.split(train[train.index("--command") + 1])
    args = command[command.index(".venv/bin/aura-jax") + 1:]
    c = check_train_args(args)["config"]
    assert c.distributed.enabled and c.distributed.coordinator_address == "" and c.mesh.fsdp == -1
