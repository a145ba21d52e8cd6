"""Building blocks shared by the Qwen2, Whisper and AuRA modules.

Every parameter carries `logical_axes` metadata (names such as "embed", "mlp",
"heads", "vocab"); `aura_jax.training.sharding` maps those names to mesh axes. The model
files themselves know nothing about meshes.
"""

from __future__ import annotations

import contextlib
import contextvars

import jax
import jax.numpy as jnp
from flax import nnx

# How activations are pinned to devices, set only while a sharded step is traced
# (`aura_jax.training.sharding.activation_constraints`); models name logical axes and never see a mesh.
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


@jax.custom_vjp
def bf16_dot(x: jax.Array, w: jax.Array) -> jax.Array:
    """x @ w with bfloat16 operands and a float32 result (float32 accumulation), forward and backward.

    XLA:CPU sends a bf16 × bf16 dot that asks for an f32 result to YNNPACK's bf16 kernel (2-3.8× an f32
    dot on AVX512-BF16; a plain bf16 dot is rewritten to f32 and gains nothing: ../shared/NOTES.md). Left
    to autodiff, the backward dot would take the f32 cotangent and the weight back to f32 speed; here
    the cotangent is rounded to bf16 too. The weight's gradient is computed only if something asks for
    it (frozen weights: never; XLA drops it)."""
    return jnp.matmul(x.astype(jnp.bfloat16), w.astype(jnp.bfloat16), preferred_element_type=jnp.float32)


def _bf16_dot_fwd(x, w):
    xb, wb = x.astype(jnp.bfloat16), w.astype(jnp.bfloat16)
    return jnp.matmul(xb, wb, preferred_element_type=jnp.float32), (xb, wb, jnp.zeros((0,), x.dtype),
                                                                     jnp.zeros((0,), w.dtype))


def _bf16_dot_bwd(res, g):
    xb, wb, x_dtype, w_dtype = res
    gb = g.astype(jnp.bfloat16)
    dx = jnp.matmul(gb, wb.T, preferred_element_type=jnp.float32).astype(x_dtype.dtype)
    dw = jnp.matmul(xb.reshape(-1, xb.shape[-1]).T, gb.reshape(-1, gb.shape[-1]),
                    preferred_element_type=jnp.float32).astype(w_dtype.dtype)
    return dx, dw


bf16_dot.defvjp(_bf16_dot_fwd, _bf16_dot_bwd)


def set_dot_dtype(model: nnx.Module, dot_dtype: str | None, *, store: bool = True) -> None:
    """Every `Linear` and `Embed.attend` of `model` multiplies by its weights as `dot_dtype`: None (the
    compute dtype, exact) or "bfloat16" (`bf16_dot`: bf16 operands, f32 results and accumulation).
    store: whether `store_frozen_dot_weights` may round their frozen weights once (the same bits)."""
    if dot_dtype not in (None, "", "bfloat16"):
        raise ValueError(f"dot_dtype={dot_dtype!r}: use '' (the compute dtype) or 'bfloat16'")
    for _, module in nnx.iter_graph(model):
        if isinstance(module, (Linear, Embed)):
            module.dot_dtype = dot_dtype or None
            module.store_dot_weight = store


def _as_bfloat16(x):
    """x in bfloat16: an array, or (abstract models, `jax.ShapeDtypeStruct`) its shape with the new type."""
    if isinstance(x, jax.ShapeDtypeStruct):
        return jax.ShapeDtypeStruct(x.shape, jnp.bfloat16, sharding=x.sharding)
    return x.astype(jnp.bfloat16)


def store_frozen_dot_weights(model: nnx.Module) -> int:
    """Store once in bfloat16 every frozen weight that only `bf16_dot` reads; returns how many.

    With bf16 dots a float32 weight is rounded to bf16 inside every step: XLA converts the whole
    matrix each time (the tied 49,152 × 576 embedding alone cost 0.11-0.14 s a step, docs/BENCHMARKS.md,
    issue 45). Rounding it once gives the same bits, so the step computes exactly what it computed.
    Frozen `Linear` kernels are converted in place (biases stay as they are: they are added in the
    compute dtype). A tied `Embed` is also read by the token lookup, which must stay exact, so it
    keeps its table and gains a bf16 copy (`attend_embedding`) for the output projection.
    Trainables are never touched: their updates stay float32. Called by the training step and, inside
    the jitted generation, on its own copy of the weights (the model's arrays outside stay as they
    are: a merged export folds LoRA into the float32 kernels it loads). Modules set up with
    `set_dot_dtype(..., store=False)` are left alone (config `model.store_dot_weights=false`)."""
    linears, embeds = [], []
    for _, module in nnx.iter_graph(model):
        if getattr(module, "dot_dtype", None) != "bfloat16" or not module.store_dot_weight:
            continue
        if isinstance(module, Linear) and not isinstance(module.kernel, Trainable):
            linears.append(module)
        elif isinstance(module, Embed) and module.tied and not hasattr(module, "attend_embedding"):
            embeds.append(module)
    for module in linears:
        module.kernel.set_value(_as_bfloat16(module.kernel.get_value()))
    for module in embeds:
        module.attend_embedding = nnx.Param(_as_bfloat16(module.embedding.get_value()),
                                            logical_axes=module.embedding.get_metadata()["logical_axes"])
    return len(linears) + len(embeds)


class Linear(nnx.Module):
    """y = x @ kernel (+ bias); kernel is [in, out] (Hugging Face stores [out, in])."""

    dot_dtype = None  # `set_dot_dtype`
    store_dot_weight = True

    def __init__(self, in_features: int, out_features: int, *, use_bias: bool, axes: tuple[str, str],
                 rngs: nnx.Rngs, param_dtype=jnp.float32, dtype=jnp.float32, kind=nnx.Param,
                 kernel_init=nnx.initializers.lecun_normal()):
        self.in_features, self.out_features, self.dtype = in_features, out_features, dtype
        self.kernel = param(rngs, kernel_init, (in_features, out_features), param_dtype, axes, kind)
        self.bias = (param(rngs, nnx.initializers.zeros, (out_features,), param_dtype, axes[1:], kind)
                     if use_bias else None)

    def __call__(self, x: jax.Array, adapter_mask: jax.Array | None = None) -> jax.Array:
        """adapter_mask: for a LoRA wrapper's signature (`models.lora`); a plain linear has no adapter."""
        if self.dot_dtype == "bfloat16":
            y = bf16_dot(x, self.kernel[...]).astype(self.dtype)
        else:
            y = jnp.dot(x.astype(self.dtype), self.kernel[...].astype(self.dtype))
        if self.bias is not None:
            y = y + self.bias[...].astype(self.dtype)
        return y


class Embed(nnx.Module):
    """Token embedding table [vocab, embed]; `attend` is the tied output projection."""

    dot_dtype = None  # `set_dot_dtype`
    store_dot_weight = True
    tied = False  # also the output projection (`attend`): set by the LM that ties it

    def __init__(self, num_embeddings: int, features: int, *, rngs: nnx.Rngs,
                 param_dtype=jnp.float32, dtype=jnp.float32, axes=("vocab", "embed")):
        self.dtype = dtype
        self.embedding = param(rngs, nnx.initializers.normal(0.02), (num_embeddings, features),
                               param_dtype, axes)

    def __call__(self, ids: jax.Array) -> jax.Array:
        return jnp.take(self.embedding[...], ids, axis=0).astype(self.dtype)

    def attend(self, x: jax.Array) -> jax.Array:
        if self.dot_dtype == "bfloat16":
            table = self.attend_embedding if hasattr(self, "attend_embedding") else self.embedding
            return bf16_dot(x, table[...].T).astype(self.dtype)
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


def _one_query_attention(q, k, v, bias, scale):
    """`looped_attention` for a single query position: one einsum over every example and head."""
    b, _, h, d = q.shape
    kv = k.shape[2]
    q = q.reshape(b, kv, h // kv, d)
    scores = jnp.einsum("bkgd,bskd->bkgs", q, k).astype(jnp.float32) * scale
    if bias is not None:  # bias [b | 1, 1, 1, s]: the one query row, broadcast over (kv, group)
        scores = scores + bias[:, :, 0, None, :]
    probs = jax.nn.softmax(scores, axis=-1).astype(v.dtype)
    return jnp.einsum("bkgs,bskd->bkgd", probs, v).reshape(b, 1, h, d)


def looped_attention(q: jax.Array, k: jax.Array, v: jax.Array, bias: jax.Array | None, scale: float) -> jax.Array:
    """Softmax attention computed one (example, key/value head) at a time.

    q [batch, t, heads, d]; k, v [batch, s, kv_heads, d]; bias additive [batch | 1, 1, t, s] or None
    → [batch, t, heads, d]. Each step holds one [heads/kv_heads, t, s] score tile. The all-heads einsum
    makes XLA:CPU write and re-read a [batch, heads, t, s] tensor that falls out of cache (216 MB for
    Whisper's 1500 frames at batch 4); tile by tile the same math ran 2.7× faster there
    (docs/BENCHMARKS.md, issue 16). On GPU and TPU the loop only serialises: use "xla" or "dot_product".
    The softmax is normalised after the value product (one pass less over the scores)."""
    b, t, h, d = q.shape
    s, kv = k.shape[1], k.shape[2]
    if t == 1:  # a decode step: the scores are one row per head, so looping would only add steps
        return _one_query_attention(q, k, v, bias, scale)
    q = q.reshape(b, t, kv, h // kv, d).transpose(0, 2, 3, 1, 4)  # [b, kv, group, t, d]
    k, v = k.transpose(0, 2, 1, 3), v.transpose(0, 2, 1, 3)  # [b, kv, s, d]

    def tile(q, k, v, bias):  # [group, t, d], [s, d], [s, d], [t, s] | None
        scores = jnp.einsum("gtd,sd->gts", q, k).astype(jnp.float32) * scale
        if bias is not None:
            scores = scores + bias
        weights = jnp.exp(scores - jax.lax.stop_gradient(scores.max(-1, keepdims=True)))
        out = jnp.einsum("gts,sd->gtd", weights.astype(v.dtype), v)
        return (out / weights.sum(-1, keepdims=True).astype(out.dtype)).astype(v.dtype)

    def example(args):
        q, k, v, bias = args
        return jax.lax.map(lambda heads: tile(*heads, bias), (q, k, v))

    if bias is None or bias.shape[0] == 1:
        shared = None if bias is None else bias[0, 0]
        out = jax.lax.map(lambda a: example((*a, shared)), (q, k, v))
    else:
        out = jax.lax.map(example, (q, k, v, bias[:, 0]))
    return out.transpose(0, 3, 1, 2, 4).reshape(b, t, h, d)  # [b, kv, group, t, d] -> [b, t, heads, d]
