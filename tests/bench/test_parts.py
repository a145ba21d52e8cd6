"""`aura-jax bench-train --parts`: the step's time, part by part, in JAX and PyTorch."""

import json

import pytest

from aura_jax.bench.parts import PARTS, einsum_spec, matmul_floor, parts_of


def test_the_parts_are_differences_of_nested_programs_and_add_up_to_the_step():
    programs = {"student_forward": 1.0, "student_forward_backward": 3.0, "teacher_forward": 0.5,
                "loss_forward_backward": 4.5, "step": 4.75}
    parts = parts_of(programs)
    assert parts == {"student_forward": 1.0, "student_backward": 2.0, "teacher_forward": 0.5,
                     "alignment_distill": 1.0, "optimizer": 0.25}
    assert sum(parts.values()) == pytest.approx(programs["step"])


def test_cli_parts_on_the_tiny_models(tiny_aura_config, tmp_path, capsys):
    from aura_jax.cli import main

    out = tmp_path / "parts.json"
    assert main(["bench-train", "configs/tiny.yaml", *tiny_aura_config, "batch_size=2", "data.text_bucket=32",
                 "compilation_cache_dir=", "--parts", "--steps", "1", "--warmup", "1", "--json", str(out)]) == 0
    r = json.loads(out.read_text())
    for fw in ("jax", "torch"):
        assert all(r["programs"][fw][name] > 0 for name in r["programs"][fw])
        assert set(r["parts"][fw]) == set(PARTS)
    f = r["flops"]  # each nested program computes more than the one inside it
    assert 0 < f["student_forward"] < f["student_forward_backward"] < f["loss_forward_backward"] <= f["step"]
    assert f["teacher_forward"] > 0 and r["part_flops"]["alignment_distill"] > 0
    assert r["matmul"]["jax_gflops"] > 0 and r["matmul"]["torch_gflops"] > 0
    # the step's matmuls alone: fewer FLOPs than XLA counts for the whole step (which adds elementwise work)
    assert 0 < r["matmul_floor"]["gflop"] * 1e9 <= f["step"] and r["matmul_floor"]["jax_s"] > 0
    assert set(r["part_floor"]) == set(PARTS) and r["program_floor"]["step"] == r["matmul_floor"]["jax_s"]
    text = capsys.readouterr().out
    assert "JAX / floor" in text
    assert "| student_backward |" in text and "| whole step |" in text and "plain matmul" in text
    assert "each timed alone" in text


@pytest.mark.parametrize("dims", [(((1,), (0,)), ((), ())),            # x @ w
                                  (((1,), (1,)), ((), ())),            # x @ wᵀ
                                  (((0,), (0,)), ((), ())),            # xᵀ @ y (a weight gradient)
                                  (((2,), (2,)), ((0,), (0,))),        # q kᵀ per batch
                                  (((1,), (2,)), ((0,), (0,)))])       # contracting dims on both sides moved
def test_einsum_spec_computes_what_the_xla_dot_computes(dims):
    import jax
    import numpy as np
    import torch

    (lc, rc), (lb, rb) = dims
    shapes = {(((1,), (0,)), ((), ())): ((3, 4), (4, 5)), (((1,), (1,)), ((), ())): ((3, 4), (5, 4)),
              (((0,), (0,)), ((), ())): ((4, 3), (4, 5)), (((2,), (2,)), ((0,), (0,))): ((2, 3, 4), (2, 5, 4)),
              (((1,), (2,)), ((0,), (0,))): ((2, 4, 3), (2, 5, 4))}[dims]
    rng = np.random.default_rng(0)
    a, b = (rng.standard_normal(s).astype(np.float32) for s in shapes)
    ours = torch.einsum(einsum_spec(a.ndim, b.ndim, lc, rc, lb, rb), torch.from_numpy(a), torch.from_numpy(b))
    np.testing.assert_allclose(ours.numpy(), np.asarray(jax.lax.dot_general(a, b, dims)), rtol=1e-5, atol=1e-5)


def test_matmul_floor_times_each_matmul_as_often_as_the_program_runs_it():
    import jax
    import jax.numpy as jnp

    def program(x, w):
        return jax.lax.fori_loop(0, 4, lambda i, x: jnp.tanh(x @ w), x) @ w.T

    text = jax.jit(program).lower(jnp.ones((64, 32)), jnp.ones((32, 32))).compile().as_text()
    floor = matmul_floor(text, repeats=1)
    assert floor["executions"] == 5 and floor["shapes"] == 2
    assert floor["gflop"] == pytest.approx(5 * 2 * 64 * 32 * 32 / 1e9)
    assert floor["jax_s"] > 0 and floor["torch_s"] > 0


def test_matmul_floor_times_a_bf16_dot_of_the_program_as_bf16():
    """A bf16 × bf16 → f32 dot in the compiled HLO is timed with bf16 operands and an f32 result
    (issue 45: the floor used to time every dot in f32), an f32 dot as f32."""
    import jax
    import jax.numpy as jnp

    def program(x, w):
        y = jax.lax.dot(x.astype(jnp.bfloat16), w.astype(jnp.bfloat16), preferred_element_type=jnp.float32)
        return y @ w.T

    text = jax.jit(program).lower(jnp.ones((64, 32)), jnp.ones((32, 32))).compile().as_text()
    floor = matmul_floor(text, repeats=1)
    kinds = {s["types"]: s["timed_as"] for s in floor["by_shape"]}
    assert kinds == {"bf16×bf16→f32": "bf16×bf16→f32", "f32×f32→f32": "f32×f32→f32"}
    assert set(floor["by_type"]) == set(kinds) and floor["by_type"]["bf16×bf16→f32"]["executions"] == 1
