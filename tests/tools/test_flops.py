"""hlo_matmul_flops_by_dtype: each dot's 2·|out|·|contracted| under its operand and result types, read
from a lowered module and from a compiled one's optimized text alike."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from aura_jax.tools.flops import hlo_matmul_flops, hlo_matmul_flops_by_dtype


def mixed(x, w, v):
    """A bf16 × bf16 → f32 weight dot, then a batched f32 einsum of two activations."""
    h = jax.lax.dot_general(x.astype(jnp.bfloat16), w.astype(jnp.bfloat16), (((2,), (0,)), ((), ())),
                            preferred_element_type=jnp.float32)  # [4, 8, 16]
    return jnp.einsum("bsd,btd->bst", h, v)  # [4, 8, 5]


def test_each_dot_is_counted_under_its_operand_types_before_and_after_xla_optimizes():
    x, w, v = jnp.ones((4, 8, 32)), jnp.ones((32, 16)), jnp.ones((4, 5, 16))
    expected = {"bf16×bf16→f32": 2.0 * 4 * 8 * 16 * 32, "f32×f32→f32": 2.0 * 4 * 8 * 5 * 16}
    lowered = jax.jit(mixed).lower(x, w, v)
    assert hlo_matmul_flops_by_dtype(lowered.compiler_ir("hlo").as_hlo_text()) == expected
    assert hlo_matmul_flops_by_dtype(lowered.compile().as_text()) == expected
    assert hlo_matmul_flops(lowered.compiler_ir("hlo").as_hlo_text()) == sum(expected.values())
