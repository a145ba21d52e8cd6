"""`aura-jax bench-ops` (issue 16): each variant it times computes what PyTorch computes, so its
timings compare like with like. Tiny shapes here; the command runs the bench-cpu shapes."""

import pytest

from aura_jax.bench import ops as bench_ops


@pytest.fixture
def tiny_shapes(monkeypatch):
    monkeypatch.setattr(bench_ops, "ATTENTION_SHAPE", dict(batch=2, frames=40, d_model=32, heads=4))
    monkeypatch.setattr(bench_ops, "MLP_SHAPE", dict(batch=2, seq=9, hidden=16, intermediate=24, rank=4))


def test_attention_variants_equal_transformers(tiny_shapes):
    runs, diff = bench_ops.attention_runs()
    assert set(runs) == {"jax xla", "jax dot_product", "jax looped", "torch sdpa"}
    assert diff <= 1e-5


def test_lora_mlp_gradients_equal_torch_autograd(tiny_shapes):
    runs, diff = bench_ops.lora_mlp_runs()
    assert set(runs) == {"jax 3-D update", "jax 2-D update (LoRALinear)", "torch autograd"}
    assert diff <= 1e-4


def test_report_lists_every_variant(tiny_shapes):
    r = bench_ops.bench_ops(rounds=1, threads=1)
    text = bench_ops.format_ops(r)
    for part in ("attention", "lora_mlp"):
        for variant, seconds in r[part]["seconds"].items():
            assert seconds > 0 and f"| {variant} |" in text
    assert "load average before" in text
