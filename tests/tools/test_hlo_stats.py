"""What a compiled program says about itself: collectives counted once per logical op and per loop
iteration, bytes from HLO shapes, memory totals; and the estimates built on them."""

from __future__ import annotations

import math

import pytest

from aura_jax.tools import aot, hlo_stats
from aura_jax.tools.targets import CHIPS

# A hand-written module in the optimised-HLO dialect both backends print: a TPU-style all-gather
# cloned into two fusions under one channel, an async all-reduce pair, and a collective inside a
# while loop with a known trip count of 4 (a gradient-accumulation scan).
HLO = """HloModule jit_train_step, entry_computation_layout={()->()}

%fused_a (param_0.1: bf16[512,64]) -> bf16[4096,64] {
  %param_0.1 = bf16[512,64]{1,0:T(8,128)(2,1)} parameter(0)
  ROOT %all-gather.7 = bf16[4096,64]{1,0:T(8,128)(2,1)} all-gather(%param_0.1), channel_id=5, replica_groups=[1,8]<=[8], dimensions={0}
}

%fused_b (param_0.2: bf16[512,64]) -> bf16[4096,64] {
  %param_0.2 = bf16[512,64]{1,0} parameter(0)
  ROOT %all-gather.8 = bf16[4096,64]{1,0} all-gather(%param_0.2), channel_id=5, replica_groups=[1,8]<=[8], dimensions={0}
}

%body (p: (s32[], f32[1024])) -> (s32[], f32[1024]) {
  %p = (s32[], f32[1024]) parameter(0)
  %g = f32[1024]{0} get-tuple-element(%p), index=1
  %reduce-scatter.2 = f32[128]{0} reduce-scatter(%g), channel_id=9, replica_groups=[1,8]<=[8], dimensions={0}, to_apply=%add
  ROOT %t = (s32[], f32[1024]) tuple(%i, %g)
}

%cond (p: (s32[], f32[1024])) -> pred[] {
  ROOT %c = pred[] constant(true)
}

ENTRY %main.1 (x: bf16[512,64], y: f32[1024]) -> bf16[4096,64] {
  %x = bf16[512,64]{1,0} parameter(0)
  %f1 = bf16[4096,64]{1,0} fusion(%x), kind=kLoop, calls=%fused_a
  %f2 = bf16[4096,64]{1,0} fusion(%x), kind=kLoop, calls=%fused_b
  %all-reduce-start.3 = (f32[1024]{0}, f32[1024]{0}) all-reduce-start(%y), channel_id=11, replica_groups=[1,8]<=[8], to_apply=%add
  %all-reduce-done.3 = f32[1024]{0} all-reduce-done(%all-reduce-start.3)
  %w = (s32[], f32[1024]) while(%init), condition=%cond, body=%body, backend_config={"known_trip_count":{"n":"4"}}
  ROOT %r = bf16[4096,64]{1,0} add(%f1, %f2)
}
"""


def test_collectives_count_each_logical_op_once_and_each_loop_iteration():
    colls = hlo_stats.collectives(HLO)
    assert colls["all-gather"] == {"count": 1, "static_count": 1, "bytes": 4096 * 64 * 2}
    assert colls["all-reduce"] == {"count": 1, "static_count": 1, "bytes": 1024 * 4}  # the -start's result half
    assert colls["reduce-scatter"] == {"count": 4, "static_count": 1, "bytes": 4 * 128 * 4}
    assert hlo_stats.interconnect_bytes(colls) == 4096 * 64 * 2 + 2 * 1024 * 4 + 4 * 128 * 4


def test_shape_bytes_reads_tuples_and_tpu_layouts():
    assert hlo_stats.shape_bytes("bf16[8,128]{1,0:T(8,128)(2,1)}") == [2048]
    assert hlo_stats.shape_bytes("(f32[4]{0}, s32[2,3]{1,0}, pred[])") == [16, 24, 1]


class _Memory:
    argument_size_in_bytes, output_size_in_bytes, temp_size_in_bytes = 100, 40, 500
    alias_size_in_bytes, generated_code_size_in_bytes = 30, 10


class _Compiled:
    def memory_analysis(self):
        return _Memory()


def test_memory_total_counts_donated_buffers_once_and_judges_the_fit():
    m = hlo_stats.memory(_Compiled(), capacity_bytes=1000, usable_fraction=0.9)
    assert m["total"] == 100 + 40 - 30 + 500 + 10
    assert m["fits"] and m["headroom"] == 900 - 620
    assert not hlo_stats.memory(_Compiled(), capacity_bytes=600, usable_fraction=0.9)["fits"]


def test_a_negative_cost_model_time_is_rejected_for_the_roofline():
    chip = CHIPS["v5e"]
    costs = {"flops": 2e14, "bytes_accessed": 4e11, "optimal_seconds": -734.7}
    est = aot.estimate(chip, costs, link_bytes=1e11, model_flops_per_device=1.5e14, rows=16)
    terms = est["roofline_terms"]
    assert terms == pytest.approx({"compute_s": 2e14 / 197e12, "hbm_s": 4e11 / 8.19e11, "interconnect_s": 1e11 / 200e9})
    assert est["step_s"] == max(terms.values()) and not est["cost_model_sane"]
    assert "roofline" in est["method"] and "-734.7 rejected" in est["method"] and est["is_estimate"]
    assert est["mfu"] == pytest.approx(1.5e14 / (est["step_s"] * 197e12))
    sane = aot.estimate(chip, dict(costs, optimal_seconds=1.5), 1e11, 1.5e14, 16)
    assert sane["step_s"] == 1.5 and sane["method"].startswith("TPU cost model")
    gpu = aot.estimate(CHIPS["h100"], dict(costs, optimal_seconds=1.5), 1e11, 1.5e14, 16, platform="cuda")
    assert "roofline" in gpu["method"] and gpu["cost_model_optimal_s"] is None  # GPUs: no timing model


def test_a_program_the_compiler_refuses_is_reported_as_not_fitting():
    err = RuntimeError("RESOURCE_EXHAUSTED: Ran out of memory on HBM, the total memory required for HLO "
                       "temporaries (28.00G) exceeds available HBM (15.75G).")
    target = aot.tg.TARGETS["tpu-v5e-8"]
    r = aot.with_estimate(aot.out_of_memory(err, target, 8, 8e12), target)
    assert r["memory"]["fits"] is False and r["memory"]["required"] == 28 * 2**30
    assert r["memory"]["available"] == 15.75 * 2**30 and r["estimate"]["step_s"] is None
    with pytest.raises(ValueError):
        aot.out_of_memory(ValueError("something else"), target, 8, 1.0)
    assert math.isclose(r["model_flops_per_device"], 1e12)


def test_dots_counts_every_matmul_as_often_as_its_loops_run():
    """A matmul inside a 2-step scan inside a 3-step scan runs 6 times; the outer body carries six
    arrays, so its header holds /*index=5*/ comments (which once hid a computation's start)."""
    import jax
    import jax.numpy as jnp

    def program(x, w, q, k, vs):
        def outer(carry, _):
            x, vs = carry

            def inner(x, _):
                return jnp.tanh(x @ w), None

            x, _ = jax.lax.scan(inner, x, None, length=2)
            return (x, [v * x.sum() for v in vs]), None

        carry, _ = jax.lax.scan(outer, (x, vs), None, length=3)
        return carry, jnp.einsum("bqd,bkd->bqk", q, k)

    args = (jnp.ones((8, 16)), jnp.ones((16, 16)), jnp.ones((2, 5, 4)), jnp.ones((2, 7, 4)), [jnp.ones(3)] * 6)
    text = jax.jit(program).lower(*args).compile().as_text()
    found = hlo_stats.dots(text)
    by_shape = {(d["lhs"], d["rhs"]): d for d in found}
    loop = by_shape[((8, 16), (16, 16))]
    assert loop["count"] == 6 and loop["flops"] == 2 * 8 * 16 * 16
    attn = by_shape[((2, 5, 4), (2, 7, 4))]
    assert attn["count"] == 1 and attn["lhs_batch"] == attn["rhs_batch"] == (0,)
    assert attn["lhs_contracting"] == attn["rhs_contracting"] == (2,) and attn["flops"] == 2 * 2 * 5 * 7 * 4
    assert sum(d["flops"] * d["count"] for d in found) == 6 * 2 * 8 * 16 * 16 + 2 * 2 * 5 * 7 * 4
