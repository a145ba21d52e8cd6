"""The PyTorch reference step (aura_jax.torch.reference_step) computes the same loss as the JAX
training step at step 0 from the same weights and batch — what makes bench-train's JAX/PyTorch
time ratio a comparison of the same work — and its AdamW step runs and tracks JAX's."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("peft")


@pytest.fixture(scope="module")
def config(tiny_aura_config):
    from aura_jax.config import load_config

    return load_config(None, [*tiny_aura_config, "batch_size=2", "data.text_bucket=24", "optim.warmup_steps=0",
                              "optim.learning_rate=1e-3", "compilation_cache_dir="])


@pytest.fixture(scope="module")
def jax_run(config):
    from aura_jax.bench.step import bench_jax

    return bench_jax(config, steps=1, warmup=1, keep_initial_trainables=True, log=lambda *a, **k: None)


def test_loss_at_step0_equals_jax_on_the_same_batch(config, jax_run):
    from aura_jax.torch.reference_step import ReferenceStep

    ref = ReferenceStep(config, trainables=jax_run["initial_trainables"])
    _, metrics = ref.loss(jax_run["host_batch"])
    for key in ("loss", "ce", "distill"):
        jax_value, torch_value = jax_run["step0"][key], float(metrics[key])
        assert abs(jax_value - torch_value) <= 1e-4 * abs(jax_value), (key, jax_value, torch_value)
    assert jax_run["step0"]["distill"] > 0 and jax_run["step0"]["ce"] > 0


def test_demo_batch_with_text_rows_and_short_audio(config, tiny_batch, make_aura):
    """Text-only rows (no audio, distillation masked), short clips (teacher interpolated up to N)."""
    import jax
    from flax import nnx

    from aura_jax.bench.step import trainable_arrays
    from aura_jax.models.layers import Trainable
    from aura_jax.torch.reference_step import ReferenceStep
    from aura_jax.training.loss import aura_loss

    model = make_aura()
    batch = {k: np.asarray(v) for k, v in tiny_batch.items()}
    assert (batch["audio_valid_frames"] < 600).all()  # T < N = 300 teacher frames: the interpolation branch
    _, expected = jax.jit(lambda b: aura_loss(model, b))(batch)
    ref = ReferenceStep(config, trainables=trainable_arrays(nnx.state(model, Trainable)))
    _, got = ref.loss(batch)
    for key in ("loss", "ce", "distill"):
        assert abs(float(expected[key]) - float(got[key])) <= 1e-4 * abs(float(expected[key])), key


def test_step_runs_and_follows_jax(config, jax_run):
    """Two AdamW steps from the same start: PyTorch's second-step loss matches JAX's."""
    from aura_jax.torch.reference_step import ReferenceStep

    ref = ReferenceStep(config, trainables=jax_run["initial_trainables"])
    before = [p.detach().clone() for p in ref.params]
    m0 = ref.step(jax_run["host_batch"])
    m1 = ref.step(jax_run["host_batch"])
    assert any(not (a == p.detach()).all() for a, p in zip(before, ref.params))
    assert float(m1["loss"]) < float(m0["loss"])
    from aura_jax.training.train import Trainer

    trainer = Trainer(config, log=lambda *a, **k: None)
    losses = [trainer.train_step(jax_run["host_batch"])[0]["loss"] for _ in range(2)]
    assert abs(float(losses[1]) - float(m1["loss"])) <= 1e-3 * abs(float(losses[1]))
