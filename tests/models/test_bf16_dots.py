"""`model.dot_dtype=bfloat16`: the frozen weights' dots take bf16 operands and give f32 results, in the
forward and in the backward pass (`bf16_dot`'s own VJP); the default stays exact float32."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from aura_jax.models.layers import Linear, bf16_dot, set_dot_dtype


def bf16(x):
    return np.asarray(jnp.asarray(x).astype(jnp.bfloat16).astype(jnp.float32), np.float64)


@pytest.fixture(scope="module")
def xwg():
    rng = np.random.default_rng(0)
    return (rng.standard_normal((2, 5, 48)).astype(np.float32), rng.standard_normal((48, 24)).astype(np.float32),
            rng.standard_normal((2, 5, 24)).astype(np.float32))


def test_forward_is_the_bf16_rounded_product_accumulated_in_float32(xwg):
    x, w, _ = xwg
    y = bf16_dot(jnp.asarray(x), jnp.asarray(w))
    assert y.dtype == jnp.float32
    np.testing.assert_allclose(np.asarray(y), bf16(x) @ bf16(w), rtol=1e-5, atol=1e-5)  # f64 reference
    rel = np.abs(np.asarray(y) - x @ w).max() / np.abs(x @ w).max()
    assert 1e-4 < rel < 1e-2  # bf16 operands: visibly not f32, within bf16's tolerance


def test_backward_rounds_the_cotangent_and_accumulates_in_float32(xwg):
    x, w, g = xwg
    _, vjp = jax.vjp(bf16_dot, jnp.asarray(x), jnp.asarray(w))
    dx, dw = vjp(jnp.asarray(g))
    np.testing.assert_allclose(np.asarray(dx), bf16(g) @ bf16(w).T, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(np.asarray(dw), bf16(x).reshape(-1, 48).T @ bf16(g).reshape(-1, 24), rtol=1e-5, atol=1e-4)
    # against float32 autodiff: bf16's tolerance
    _, vjp32 = jax.vjp(jnp.matmul, jnp.asarray(x), jnp.asarray(w))
    dx32, _ = vjp32(jnp.asarray(g))
    assert np.abs(np.asarray(dx) - np.asarray(dx32)).max() < 2e-2 * np.abs(np.asarray(dx32)).max()


def dots(hlo: str) -> list[str]:
    return [line for line in hlo.splitlines() if " dot(" in line]


def test_the_input_gradient_of_a_frozen_linear_is_one_bf16_dot_and_the_weight_gradient_is_dropped(xwg):
    from flax import nnx

    x, w, _ = xwg
    layer = Linear(48, 24, use_bias=False, axes=("embed", "mlp"), rngs=nnx.Rngs(0))
    def grad_step(dot_dtype):
        set_dot_dtype(layer, dot_dtype)
        graphdef, state = nnx.split(layer)

        def loss(x, state):  # the weights are an argument, as the frozen state is in the step, not differentiated
            return jnp.sum(nnx.merge(graphdef, state)(x) ** 2)

        return jax.jit(jax.grad(loss)).lower(jnp.asarray(x), state)

    lowered = grad_step("bfloat16")
    typed = [line for line in lowered.as_text().splitlines() if "dot_general" in line]
    assert typed and all(line.count("bf16>") == 2 and line.rstrip().endswith("f32>") for line in typed), typed
    assert len(dots(lowered.compile().as_text())) == 2  # forward and dx: XLA drops the unused dW
    plain = [line for line in grad_step(None).as_text().splitlines() if "dot_general" in line]
    assert plain and not any("bf16" in line for line in plain)


def test_a_bad_dot_dtype_is_one_error_naming_it():
    from aura_jax.config import ConfigError, load_config

    with pytest.raises(ConfigError, match="model.dot_dtype='float16'"):
        load_config(None, ["model.dot_dtype=float16"])
