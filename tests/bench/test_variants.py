"""aura-jax bench-variants: every variant's compiled step timed in interleaved rounds, with what its
matmuls run in."""

from __future__ import annotations

import pytest


def test_variants_are_timed_round_robin_and_report_their_dot_types(tiny_aura_config):
    from aura_jax.bench.variants import parse_variant, run, table

    shared = [*tiny_aura_config, "batch_size=2", "data.text_bucket=32", "compilation_cache_dir="]
    out = run(None, shared, [parse_variant("f32:"), parse_variant("bf16:model.dot_dtype=bfloat16")],
              steps=2, warmup=0, data="synthetic", log=lambda *a: None)
    f32, bf16 = out["variants"]["f32"], out["variants"]["bf16"]
    assert len(f32["times_s"]) == len(bf16["times_s"]) == 2 and f32["speedup"] == 1.0
    assert "bf16×bf16→f32" not in f32["dot_flops_by_dtype"]
    assert bf16["dot_flops_by_dtype"]["bf16×bf16→f32"] > 0
    # the same step: bf16 dots move the loss by a bf16 rounding, not more
    assert bf16["step0"]["ce"] == pytest.approx(f32["step0"]["ce"], rel=2e-2)
    text = table(out)
    assert "| bf16 | model.dot_dtype=bfloat16 |" in text
    bf16_line = next(line for line in text.splitlines() if line.startswith("bf16: dot GFLOP by operand types"))
    assert "bf16×bf16→f32" in bf16_line and "XLA's total" in bf16_line


def test_a_variant_without_a_name_is_one_error():
    from aura_jax.bench.variants import parse_variant

    with pytest.raises(ValueError, match="NAME:key=value"):
        parse_variant("model.dot_dtype=bfloat16")
