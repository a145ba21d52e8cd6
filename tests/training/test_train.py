"""The training system end to end: `aura-jax train` on the tiny config, sharding,
exact resume after SIGKILL, restore onto another mesh, SIGTERM, multi-process,
non-finite steps, optimizer state, learning, bad rows."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from aura_jax.config import load_config
from aura_jax.training.metrics import read_metrics

ROOT = Path(__file__).resolve().parents[2]
TINY = str(ROOT / "configs" / "tiny.yaml")


@pytest.fixture(scope="module")
def base(tiny_qwen2_dir, tiny_whisper_dir, tmp_path_factory):
    """Overrides every run shares: the session's tiny checkpoints, one data cache, one XLA cache."""
    shared = tmp_path_factory.mktemp("train-shared")
    return [f"model.llm={tiny_qwen2_dir}", f"model.teacher={tiny_whisper_dir}",
            f"data.cache_dir={shared / 'data'}", f"compilation_cache_dir={shared / 'xla'}"]


def train_cmd(run_dir, base, *overrides):
    return [sys.executable, "-m", "aura_jax.cli", "train", TINY, f"run_dir={run_dir}", *base, *overrides]


def env(devices=1):
    return dict(os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}", JAX_PLATFORMS="cpu",
                HF_HUB_OFFLINE="1")


def run(run_dir, base, *overrides, devices=1, timeout=300):
    proc = subprocess.run(train_cmd(run_dir, base, *overrides), env=env(devices), capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


def losses(run_dir):
    return {r["step"]: r for r in read_metrics(Path(run_dir) / "metrics.jsonl")}


@pytest.fixture(scope="module")
def straight(base, tmp_path_factory):
    """Reference: 6 steps on one device, no interruption."""
    run_dir = tmp_path_factory.mktemp("straight")
    proc = run(run_dir, base, "steps=6", "checkpoint_every=3")
    return run_dir, proc


def test_tiny_run_writes_what_the_user_sees(straight):
    run_dir, proc = straight
    records = read_metrics(run_dir / "metrics.jsonl")
    assert [r["step"] for r in records] == [1, 2, 3, 4, 5, 6]
    for key in ("step", "loss", "ce", "distill", "lr", "grad_norm", "examples_per_s", "tokens_per_s", "skipped"):
        assert key in records[0], key
    assert all(np.isfinite(r["loss"]) for r in records)
    assert records[0]["lr"] == 0.0 and records[-1]["lr"] > 0  # linear warm-up from 0
    assert list((run_dir / "tensorboard").glob("events.out.tfevents.*"))
    assert (run_dir / "loss_curve.png").stat().st_size > 1000
    saved = load_config(run_dir / "config.yaml")  # the resolved config round-trips
    assert saved.steps == 6 and saved.lora.num_layers == 2
    assert sorted(int(p.name) for p in (run_dir / "checkpoints").iterdir() if p.name.isdigit()) == [3, 6]
    assert "compiled train step" in proc.stdout and "memory" in proc.stdout
    assert "train:" in proc.stderr  # the tqdm progress bar


def assert_same_losses(a, b, steps, rtol):
    for s in steps:
        for key in ("loss", "ce", "distill"):
            np.testing.assert_allclose(a[s][key], b[s][key], rtol=rtol, err_msg=f"step {s} {key}")
        assert a[s]["batch_id"] == b[s]["batch_id"], f"step {s}: different data"


@pytest.fixture(scope="module")
def sharded(base, tmp_path_factory):
    """3 steps on 8 devices, mesh data=2 fsdp=2 tensor=2."""
    run_dir = tmp_path_factory.mktemp("sharded")
    run(run_dir, base, "steps=3", "mesh.data=2", "mesh.fsdp=2", "mesh.tensor=2", devices=8)
    return run_dir


def test_sharded_equals_unsharded(straight, sharded):
    assert_same_losses(losses(sharded), losses(straight[0]), [1, 2, 3], rtol=1e-5)


@pytest.fixture(scope="module")
def accumulated(base, tmp_path_factory):
    """The straight run's 6 steps of 4 rows, each as 2 micro-batches of 2 rows on 2 devices."""
    run_dir = tmp_path_factory.mktemp("accumulated")
    return run_dir, run(run_dir, base, "steps=6", "checkpoint_every=3", "grad_accum_steps=2", devices=2)


def test_gradient_accumulation_trains_like_the_big_batch(straight, accumulated):
    """Same data in the same order, same losses: step 1 to float precision; later steps through AdamW,
    which divides tiny gradients by their own magnitude, to 1e-4."""
    run_dir, proc = accumulated
    assert "2 micro-batches of 2 rows per step" in proc.stdout
    ours, big = losses(run_dir), losses(straight[0])
    assert_same_losses(ours, big, [1], rtol=1e-6)
    assert_same_losses(ours, big, [2, 3, 4, 5, 6], rtol=1e-4)
    assert load_config(run_dir / "config.yaml").grad_accum_steps == 2


def test_resume_with_gradient_accumulation_is_exact(accumulated, base, tmp_path):
    run_dir = tmp_path / "accum-resumed"
    run(run_dir, base, "steps=3", "checkpoint_every=3", "grad_accum_steps=2", devices=2)
    again = run(run_dir, base, "steps=6", "checkpoint_every=3", "grad_accum_steps=2", devices=2)
    assert "at step 3" in again.stdout
    assert_same_losses(losses(run_dir), losses(accumulated[0]), [4, 5, 6], rtol=1e-6)


def test_restore_onto_a_different_mesh(straight, sharded, base):
    """The 8-device run's step-3 checkpoint resumes on 1 device and continues exactly."""
    proc = run(sharded, base, "steps=6", "checkpoint_every=3")
    assert "resumed" in proc.stdout and "at step 3" in proc.stdout
    assert_same_losses(losses(sharded), losses(straight[0]), [4, 5, 6], rtol=1e-5)


def wait_for(predicate, timeout, proc):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return
        if proc.poll() is not None:
            raise AssertionError("training exited early:\n" + proc.stdout.read()[-3000:])
        time.sleep(0.2)
    raise AssertionError("timed out")


def test_resume_after_sigkill_is_exact(straight, base, tmp_path):
    run_dir = tmp_path / "killed"
    proc = subprocess.Popen(train_cmd(run_dir, base, "steps=6", "checkpoint_every=3"), env=env(), cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    committed = run_dir / "checkpoints" / "3" / "commit_success.txt"
    wait_for(committed.exists, 240, proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = {r["step"] for r in read_metrics(run_dir / "metrics.jsonl")}
    assert 3 in done and 6 not in done
    again = run(run_dir, base, "steps=6", "checkpoint_every=3")  # the same command
    assert "at step 3" in again.stdout
    assert_same_losses(losses(run_dir), losses(straight[0]), [4, 5, 6], rtol=1e-6)


def test_sigterm_saves_and_exits_zero(base, tmp_path):
    run_dir = tmp_path / "preempted"
    proc = subprocess.Popen(train_cmd(run_dir, base, "steps=50", "checkpoint_every=100"), env=env(), cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    metrics = run_dir / "metrics.jsonl"
    wait_for(lambda: metrics.exists() and metrics.read_text().count("\n") >= 2, 240, proc)
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0, out[-2000:]
    assert "SIGTERM: saved step" in out
    saved = [int(p.name) for p in (run_dir / "checkpoints").iterdir() if p.name.isdigit()]
    last = max(r["step"] for r in read_metrics(metrics))
    assert saved == [last] and last < 50


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_processes_equal_one(base, sharded, tmp_path):
    """2 processes × 4 CPU devices (gloo) give the same losses as 1 process × 8 devices."""
    run_dir = tmp_path / "multi"
    port = free_port()
    common = ["steps=3", "mesh.data=2", "mesh.fsdp=2", "mesh.tensor=2", "distributed.cpu_collectives=gloo",
              f"distributed.coordinator_address=127.0.0.1:{port}", "distributed.num_processes=2"]
    procs = [subprocess.Popen(train_cmd(run_dir, base, *common, f"distributed.process_id={i}"), env=env(4), cwd=ROOT,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for i in range(2)]
    outs = [p.communicate(timeout=400)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs[0][-2000:] + outs[1][-2000:]
    assert "compiled train step" in outs[0] and "compiled train step" not in outs[1]  # only process 0 logs
    assert_same_losses(losses(run_dir), losses(sharded), [1, 2, 3], rtol=1e-5)


# ---------------------------------------------------------------------------
# In-process: the Trainer API
# ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def trainer_and_batch(base, tmp_path_factory):
    from aura_jax.data.pipeline import TrainData
    from aura_jax.tokenizer import ChatTokenizer
    from aura_jax.training.train import Trainer

    config = load_config(TINY, [*base, f"run_dir={tmp_path_factory.mktemp('inproc')}", "batch_size=2",
                                "optim.learning_rate=1e-2", "optim.warmup_steps=0"])
    data = TrainData(config, ChatTokenizer.from_pretrained(config.model.llm), verbose=False)
    speech_first = next(s for s in range(data.num_steps) if data.batch(s)["audio_valid_frames"].all())
    return Trainer(config, data=data), data.batch(speech_first)


def test_optimizer_state_holds_only_trainables(trainer_and_batch):
    trainer, _ = trainer_and_batch
    params = trainer.state.params
    n_trainable = sum(x.size for x in jax.tree.leaves(params))
    n_opt = sum(x.size for x in jax.tree.leaves(trainer.state.opt_state))
    assert 2 * n_trainable <= n_opt <= 2 * n_trainable + 16  # Adam moments + a few counters
    frozen_shapes = {(tuple(map(str, p)), x.shape) for p, x in nnx.to_flat_state(trainer.frozen)}
    trainable_paths = {tuple(map(str, p)) for p, _ in nnx.to_flat_state(params)}
    assert not trainable_paths & {p for p, _ in frozen_shapes}
    adam = trainer.state.opt_state.inner_state[1][0]  # chain(clip, adamw) → adam state
    assert {tuple(map(str, p)) for p, _ in nnx.to_flat_state(adam.mu)} == trainable_paths


def test_non_finite_step_is_skipped_and_counted(trainer_and_batch):
    trainer, batch = trainer_and_batch
    before = jax.tree.map(np.asarray, trainer.state.params)
    poisoned = dict(batch, audio_features=np.full_like(batch["audio_features"], np.nan))
    metrics, _ = trainer.train_step(poisoned)
    assert metrics["skipped"] == 1 and metrics["skipped_total"] >= 1
    after = jax.tree.map(np.asarray, trainer.state.params)
    assert all(np.array_equal(a, b) for a, b in zip(jax.tree.leaves(before), jax.tree.leaves(after)))
    metrics, _ = trainer.train_step(batch)  # and training carries on
    assert metrics["skipped"] == 0 and np.isfinite(metrics["loss"])
    assert not all(np.array_equal(a, np.asarray(b)) for a, b in zip(jax.tree.leaves(after),
                                                                     jax.tree.leaves(trainer.state.params)))


def test_accumulated_gradients_equal_the_whole_batch(trainer_and_batch):
    """One text-only row, uneven CE targets: micro-batches divided by the whole batch's counts sum to
    the whole batch's loss, metrics and gradient."""
    from aura_jax.training import sharding as shd
    from aura_jax.training.loss import loss_normalizers
    from aura_jax.training.train import make_grad_fn

    trainer, batch = trainer_and_batch
    placeholder = nnx.merge(trainer.graphdef, trainer.state.params, trainer.frozen).placeholder_id
    batch = {k: np.array(v) for k, v in batch.items()}
    batch["input_ids"][1][batch["input_ids"][1] == placeholder] = 0  # row 1 becomes text-only
    last = np.flatnonzero(batch["loss_mask"][0])[-3:]
    batch["loss_mask"][0, last] = False  # row 0 has fewer targets
    g = shd.global_batch(batch, trainer.mesh, trainer.rules)
    params, frozen = trainer.state.params, trainer.frozen
    grads, metrics = jax.jit(make_grad_fn(trainer.graphdef))(params, frozen, g)
    acc_grads, acc_metrics = jax.jit(make_grad_fn(trainer.graphdef, grad_accum_steps=2))(params, frozen, g)
    norms = jax.device_get(loss_normalizers(g, placeholder, trainer.config.audio.patch_frames))
    assert norms["audio_rows"] == 1 and norms["target_tokens"] == metrics["target_tokens"]
    for key in ("loss", "ce", "distill", "target_tokens", "cos_l1", "mse_l2"):
        np.testing.assert_allclose(acc_metrics[key], metrics[key], rtol=1e-6, err_msg=key)
    for a, b in zip(jax.tree.leaves(acc_grads), jax.tree.leaves(grads)):
        a, b = np.asarray(a), np.asarray(b)
        assert np.max(np.abs(a - b)) <= 1e-5 * np.max(np.abs(b)) + 1e-12
    assert any(np.max(np.abs(np.asarray(x))) > 0 for x in jax.tree.leaves(grads))


def test_learns_a_fixed_batch(trainer_and_batch):
    """CE falls below 10% of its start within 80 steps; the distillation loss falls too."""
    trainer, batch = trainer_and_batch
    first, _ = trainer.train_step(batch)
    for step in range(80):
        metrics, _ = trainer.train_step(batch)
        if metrics["ce"] < 0.1 * first["ce"]:
            break
    assert metrics["ce"] < 0.1 * first["ce"], (first["ce"], metrics["ce"], step)
    assert metrics["distill"] < 0.5 * first["distill"]


def test_bad_rows_train_to_the_end_and_are_reported(base, tmp_path):
    from tests.data.datafiles import SENTENCES, mp3_bytes, speech, write_commonvoice

    good = [(f"good_{i}.mp3", SENTENCES[i], mp3_bytes(speech(SENTENCES[i]))) for i in range(4)]
    cv = write_commonvoice(tmp_path / "cv", good + [("missing.mp3", "not here", None), ("empty.mp3", "empty", b""),
                                                    ("corrupt.mp3", "corrupt", b"\xff\xfb" + os.urandom(600)),
                                                    ("fine.mp3", "", mp3_bytes(speech("no sentence")))])
    proc = run(tmp_path / "run", base, "steps=2", "batch_size=2", "data.text=[]",
               f"data.speech=[{{type: commonvoice, path: '{cv}'}}]")
    report = next(line for line in proc.stdout.splitlines() if "skipped:" in line)
    for reason in ("missing_file=1", "empty_audio=1", "unreadable_audio=1", "empty_text=1"):
        assert reason in report
    assert [r["step"] for r in read_metrics(tmp_path / "run" / "metrics.jsonl")] == [1, 2]


def test_learning_rate_schedules_warm_up_then_hold_or_follow_a_cosine_to_the_last_step():
    import math

    from aura_jax.config import ConfigError, OptimConfig
    from aura_jax.training.train import build_optimizer

    _, constant = build_optimizer(OptimConfig(learning_rate=2.0, warmup_steps=10))
    assert [float(constant(s)) for s in (0, 5, 10, 500)] == pytest.approx([0.0, 1.0, 2.0, 2.0])
    cfg = OptimConfig(learning_rate=2.0, warmup_steps=10, schedule="cosine", final_lr_ratio=0.1)
    _, cosine = build_optimizer(cfg, total_steps=110)
    floor = 0.2
    expected = lambda s: floor + (2.0 - floor) * 0.5 * (1 + math.cos(math.pi * (s - 10) / 100))
    for step in (0, 5, 10, 35, 60, 100, 110):
        want = 2.0 * step / 10 if step < 10 else expected(step)
        assert float(cosine(step)) == pytest.approx(want, rel=1e-5), step
    with pytest.raises(ConfigError, match="optim.schedule=cosine needs the run's length"):
        build_optimizer(cfg, total_steps=None)
    with pytest.raises(ConfigError, match="optim.schedule='linear'"):
        build_optimizer(OptimConfig(schedule="linear"), total_steps=100)


def test_lora_plus_scales_the_b_matrices_steps_and_nothing_else(make_aura):
    """optim.lora_b_lr_ratio (LoRA+): on the student's real trainable state, one AdamW step of B is
    ratio × the paper's step; A, the patch embedding and the heads take the paper's step exactly."""
    from flax import nnx

    from aura_jax.config import OptimConfig
    from aura_jax.models.layers import Trainable
    from aura_jax.training.train import build_optimizer, lora_b_leaves

    params = nnx.state(make_aura(), Trainable)
    grads = jax.tree.map(lambda x: jnp.full(x.shape, 0.3, x.dtype) * jnp.arange(1, x.size + 1).reshape(x.shape)
                         / x.size, params)
    steps = {}
    for ratio in (1.0, 4.0):
        tx, _ = build_optimizer(OptimConfig(learning_rate=1e-2, warmup_steps=0, weight_decay=0.1,
                                            lora_b_lr_ratio=ratio))
        steps[ratio], _ = tx.update(grads, tx.init(params), params)
    is_b = ["lora_b" in jax.tree_util.keystr(path) for path, _ in jax.tree_util.tree_flatten_with_path(params)[0]]
    assert sum(is_b) == 2 * 7 and len(is_b) > sum(is_b)  # tiny student: K = 2 layers × 7 projections
    assert jax.tree.leaves(lora_b_leaves(params)) == is_b
    for b, plain, plus in zip(is_b, jax.tree.leaves(steps[1.0]), jax.tree.leaves(steps[4.0])):
        np.testing.assert_allclose(np.asarray(plus), np.asarray(plain) * (4.0 if b else 1.0), rtol=1e-6)
        assert np.abs(np.asarray(plain)).max() > 0


def test_a_patch_warm_up_moves_the_patch_embedding_alone_for_its_steps(make_aura):
    """optim.patch_warmup_steps=2: steps 0 and 1 update only the audio patch embedding (the paper's
    step there, exactly); from step 2 every trainable takes the paper's step."""
    from flax import nnx

    from aura_jax.config import OptimConfig
    from aura_jax.models.layers import Trainable
    from aura_jax.training.train import build_optimizer, patch_embedding_leaves

    params = nnx.state(make_aura(), Trainable)
    grads = jax.tree.map(lambda x: jnp.full(x.shape, 0.2, x.dtype), params)
    plain, _ = build_optimizer(OptimConfig(learning_rate=1e-2, warmup_steps=0))
    warm, _ = build_optimizer(OptimConfig(learning_rate=1e-2, warmup_steps=0, patch_warmup_steps=2))
    is_patch = jax.tree.leaves(patch_embedding_leaves(params))
    assert 0 < sum(is_patch) < len(is_patch)
    s_plain, s_warm = plain.init(params), warm.init(params)
    for step in range(3):
        u_plain, s_plain = plain.update(grads, s_plain, params)
        u_warm, s_warm = warm.update(grads, s_warm, params)
        for patch, a, b in zip(is_patch, jax.tree.leaves(u_plain), jax.tree.leaves(u_warm)):
            want = np.asarray(a) if patch or step >= 2 else np.zeros_like(np.asarray(a))
            np.testing.assert_array_equal(np.asarray(b), want)
            assert np.abs(np.asarray(a)).max() > 0


def test_bf16_dots_train_on_frozen_weights_stored_once_in_bf16(tiny_aura_config):
    """model.dot_dtype=bfloat16: the step's frozen dot weights are bf16 arguments (no per-step
    converts; the same bits, tests/models/test_speed_options.py); the trainables, the frozen norms
    and the token table stay float32. model.store_dot_weights=false keeps every weight as loaded."""
    import jax
    import jax.numpy as jnp

    from aura_jax.config import load_config
    from aura_jax.training.train import Trainer

    def frozen_dtypes(*overrides):
        config = load_config(None, [*tiny_aura_config, *overrides])
        trainer = Trainer(config, abstract=True, devices=jax.devices()[:1], log=lambda *a: None)
        flat = {jax.tree_util.keystr(p).removesuffix(".value"): x.dtype
                for p, x in jax.tree_util.tree_leaves_with_path(trainer.frozen)}
        params = {x.dtype for x in jax.tree.leaves(trainer.state.params)}
        return flat, params

    stored, params = frozen_dtypes("model.dot_dtype=bfloat16")
    assert params == {jnp.dtype(jnp.float32)}
    kernels = {k: v for k, v in stored.items() if k.endswith("'kernel']") and "conv" not in k}  # Linear kernels
    assert kernels and set(kernels.values()) == {jnp.dtype(jnp.bfloat16)}
    assert stored["['llm']['embed_tokens']['embedding']"] == jnp.float32
    assert stored["['llm']['embed_tokens']['attend_embedding']"] == jnp.bfloat16
    assert {v for k, v in stored.items() if "norm" in k} == {jnp.dtype(jnp.float32)}
    as_loaded, _ = frozen_dtypes("model.dot_dtype=bfloat16", "model.store_dot_weights=false")
    assert set(as_loaded.values()) == {jnp.dtype(jnp.float32)} and "attend_embedding" not in str(list(as_loaded))
