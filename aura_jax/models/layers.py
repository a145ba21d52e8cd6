"""Building blocks shared by the Qwen2, Whisper and AuRA modules.

Every parameter carries `logical_axes` metadata (names such as "embed", "mlp",
"heads", "vocab"); `aura_jax.sharding` maps those names to mesh axes. The model
files themselves know nothing about meshes.
"""

from __future__ import annotations

import contextlib
import contextvars

import jax
import jax.numpy as jnp
from flax import nnx


# How activations are pinned to devices, set only while a sharded step is traced
# (`aura_jax.sharding.activation_constraints`); models name logical axes and never see a mesh.
_ACTIVATION_CONSTRAINT = contextvars.ContextVar("activation_constraint", default=None)


@contextlib.contextmanager
def activation_constraint(fn):
    """While tracing inside this context, `constrain(x, axes)` calls `fn(x, axes)`."""
    token = _ACTIVATION_CONSTRAINT.set(fn)
    try:
        yield
    finally:
        _ACTIVATION_CONSTRAINT.reset(token)


def constrain(x: jax.Array, axes: tuple) -> jax.Array:
    """Pin an activation's sharding by logical axis names, e.g. ("batch", None, None) for the residual
    stream: rows stay on their data-parallel devices and the FSDP-sharded weights are gathered, rather
    than the compiler contracting over the sharded hidden dim and all-reducing a whole batch of
    logits (which it chose for Qwen2.5-7B on a v5e-8 without this). A no-op outside a sharded step."""
    fn = _ACTIVATION_CONSTRAINT.get()
    return x if fn is None else fn(x, axes)


class Trainable(nnx.Param):
    """The one declaration of what trains: LoRA A/B, the audio patch embedding, the
    distillation heads. Optimizer, gradients, checkpoints and export all select
    parameters by this type; every plain `nnx.Param` is frozen."""


def param(rngs: nnx.Rngs | None, init, shape, dtype, axes, kind=nnx.Param) -> nnx.Variable:
    """A parameter of `kind` initialised by `init(key, shape, dtype)` with logical axis names."""
    key = rngs.params() if rngs is not None else jax.random.key(0)
    return kind(init(key, shape, dtype), logical_axes=tuple(axes))


class Linear(nnx.Module):
    """y = x @ kernel (+ bias); kernel is [in, out] (Hugging Face stores [out, in])."""

    def __init__(self, in_features: int, out_features: int, *, use_bias: bool, axes: tuple[str, str],
                 rngs: nnx.Rngs, param_dtype=jnp.float32, dtype=jnp.float32, kind=nnx.Param,
                 kernel_init=nnx.initializers.lecun_normal()):
        self.in_features, self.out_features, self.dtype = in_features, out_features, dtype
        self.kernel = param(rngs, kernel_init, (in_features, out_features), param_dtype, axes, kind)
        self.bias = (param(rngs, nnx.initializers.zeros, (out_features,), param_dtype, axes[1:], kind)
                     if use_bias else None)

    def __call__(self, x: jax.Array) -> jax.Array:
        y = jnp.dot(x.astype(self.dtype), self.kernel[...].astype(self.dtype))
        if self.bias is not None:
            y = y + self.bias[...].astype(self.dtype)
        return y


class Embed(nnx.Module):
    """Token embedding table [vocab, embed]; `attend` is the tied output projection."""

    def __init__(self, num_embeddings: int, features: int, *, rngs: nnx.Rngs,
                 param_dtype=jnp.float32, dtype=jnp.float32, axes=("vocab", "embed")):
        self.dtype = dtype
        self.embedding = param(rngs, nnx.initializers.normal(0.02), (num_embeddings, features),
                               param_dtype, axes)

    def __call__(self, ids: jax.Array) -> jax.Array:
        return jnp.take(self.embedding[...], ids, axis=0).astype(self.dtype)

    def attend(self, x: jax.Array) -> jax.Array:
        return jnp.dot(x.astype(self.dtype), self.embedding[...].astype(self.dtype).T)


class RMSNorm(nnx.Module):
    """Qwen2 RMSNorm: normalise in float32, cast back, then scale (the order transformers uses)."""

    def __init__(self, features: int, *, eps: float, rngs: nnx.Rngs | None = None,
                 param_dtype=jnp.float32, kind=nnx.Param, axes=("norm",)):
        self.eps = eps
        self.scale = param(rngs, nnx.initializers.ones, (features,), param_dtype, axes, kind)

    def __call__(self, x: jax.Array) -> jax.Array:
        dtype = x.dtype
        x32 = x.astype(jnp.float32)
        x32 = x32 * jax.lax.rsqrt(jnp.mean(x32 * x32, axis=-1, keepdims=True) + self.eps)
        return self.scale[...].astype(dtype) * x32.astype(dtype)


class LayerNorm(nnx.Module):
    """LayerNorm with bias, statistics in float32 (Whisper, the audio patch embedding)."""

    def __init__(self, features: int, *, eps: float = 1e-5, rngs: nnx.Rngs | None = None,
                 param_dtype=jnp.float32, kind=nnx.Param, axes=("norm",)):
        self.eps = eps
        self.scale = param(rngs, nnx.initializers.ones, (features,), param_dtype, axes, kind)
        self.bias = param(rngs, nnx.initializers.zeros, (features,), param_dtype, axes, kind)

    def __call__(self, x: jax.Array) -> jax.Array:
        dtype = x.dtype
        x32 = x.astype(jnp.float32)
        mean = jnp.mean(x32, axis=-1, keepdims=True)
        var = jnp.mean(jnp.square(x32 - mean), axis=-1, keepdims=True)
        y = (x32 - mean) * jax.lax.rsqrt(var + self.eps)
        return (y * self.scale[...].astype(jnp.float32) + self.bias[...].astype(jnp.float32)).astype(dtype)
