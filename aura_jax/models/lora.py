"""LoRA: W x + (α/r)·B A x on chosen linears of the first K decoder layers.

A is Kaiming-uniform (as torch/PEFT initialise it), B is zero, so a freshly
adapted model computes exactly what the base model computes. A and B are
`LoRAParam`, a kind of `Trainable`; the wrapped base weights stay plain
(frozen) `nnx.Param`. `merge_lora` folds the update into W in float32 and casts
back, which is what export uses.

`audio_only` adapters (lora.audio_only, beyond the paper) add their update only
where the caller's `adapter_mask` [batch, time] is True (the audio tokens), and
nowhere when no mask is given (text-only calls, decoding): every text position
then computes exactly the base LLM's function. No merged kernel can express a
per-position update, so such adapters refuse to merge.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from flax import nnx

from aura_jax.models.layers import Linear, Trainable

ATTENTION_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj")
MLP_TARGETS = ("gate_proj", "up_proj", "down_proj")
DEFAULT_TARGETS = ATTENTION_TARGETS + MLP_TARGETS


class LoRAParam(Trainable):
    """LoRA A and B matrices."""


class LoRALinear(nnx.Module):
    def __init__(self, base: Linear, rank: int, alpha: float, *, rngs: nnx.Rngs, param_dtype=jnp.float32,
                 audio_only: bool = False):
        in_axis, out_axis = base.kernel.get_metadata()["logical_axes"]
        bound = 1.0 / math.sqrt(base.in_features)  # kaiming_uniform_(a=sqrt(5)), the torch Linear/PEFT default
        self.base, self.rank, self.alpha, self.audio_only = base, rank, alpha, audio_only
        self.lora_a = LoRAParam(jax.random.uniform(rngs.params(), (base.in_features, rank), param_dtype, -bound, bound),
                                logical_axes=(in_axis, "lora_rank"))
        self.lora_b = LoRAParam(jnp.zeros((rank, base.out_features), param_dtype), logical_axes=("lora_rank", out_axis))

    @property
    def scale(self) -> float:
        return self.alpha / self.rank

    def __call__(self, x: jax.Array, adapter_mask: jax.Array | None = None) -> jax.Array:
        """x [batch, time, in]; adapter_mask [batch, time] bool: where an `audio_only` adapter acts
        (ignored by the paper's adapters, which act everywhere)."""
        if self.audio_only and adapter_mask is None:
            return self.base(x)
        dtype = self.base.dtype
        # The update runs on [tokens, features]: A's and B's gradients then contract one token axis.
        # Over [batch, seq] XLA:CPU first transposes the [tokens, out] output gradient, which doubled
        # the adapted layers' backward (docs/BENCHMARKS.md, issue 16).
        tokens = x.reshape(-1, x.shape[-1]).astype(dtype)
        update = jnp.dot(jnp.dot(tokens, self.lora_a[...].astype(dtype)), self.lora_b[...].astype(dtype))
        if self.audio_only:  # zero, not skipped, at text rows: the base output there is untouched bit for bit
            update = jnp.where(adapter_mask.reshape(-1, 1), update, jnp.zeros((), update.dtype))
        return self.base(x) + self.scale * update.reshape(*x.shape[:-1], update.shape[-1])

    def merged_kernel(self) -> jax.Array:
        """W + (α/r)·A B (our [in, out] layout), computed in float32, cast to W's dtype."""
        w = self.base.kernel[...]
        delta = jnp.dot(self.lora_a[...].astype(jnp.float32), self.lora_b[...].astype(jnp.float32),
                        precision=jax.lax.Precision.HIGHEST)
        return (w.astype(jnp.float32) + self.scale * delta).astype(w.dtype)


def _blocks(layer) -> dict:
    return {"self_attn": layer.self_attn, "mlp": layer.mlp}


def _target_parent(layer, target: str):
    for block in _blocks(layer).values():
        if hasattr(block, target):
            return block
    raise ValueError(f"lora.targets: unknown projection {target!r} (allowed: {', '.join(DEFAULT_TARGETS)})")


def apply_lora(llm, num_layers: int, rank: int, alpha: float, *, rngs: nnx.Rngs,
               targets=DEFAULT_TARGETS, param_dtype=jnp.float32, audio_only: bool = False) -> None:
    """Wrap `targets` of decoder layers [0, num_layers) of a Qwen2 model in LoRA, in place."""
    depth = len(llm.layers)
    if not 1 <= num_layers <= depth:
        raise ValueError(f"lora.num_layers={num_layers} is out of range: the LLM has {depth} layers")
    if rank < 1:
        raise ValueError(f"lora.rank={rank} must be a positive integer")
    for layer in list(llm.layers)[:num_layers]:
        for target in targets:
            parent = _target_parent(layer, target)
            base = getattr(parent, target)
            if isinstance(base, LoRALinear):
                raise ValueError(f"lora: {target} already has LoRA")
            setattr(parent, target, LoRALinear(base, rank, alpha, rngs=rngs, param_dtype=param_dtype,
                                               audio_only=audio_only))


def lora_modules(llm):
    """(layer index, projection name, LoRALinear) for every adapted projection."""
    for i, layer in enumerate(llm.layers):
        for block in _blocks(layer).values():
            for name in DEFAULT_TARGETS:
                module = getattr(block, name, None)
                if isinstance(module, LoRALinear):
                    yield i, name, module


class AudioOnlyMergeError(ValueError):
    """Adapters that act at audio positions only cannot become one kernel."""


def audio_only(llm) -> bool:
    return any(module.audio_only for _, _, module in lora_modules(llm))


def merge_lora(llm) -> None:
    """Fold every LoRA update into its base kernel (float32 math) and drop the adapters, in place."""
    if audio_only(llm):
        raise AudioOnlyMergeError(
            "lora.audio_only=true: the adapters act at the audio positions only, and a merged kernel would "
            "act at every position (text answers would change); serve such a run with the JAX model "
            "(aura-jax eval / generate_aura on the run directory), or train with lora.audio_only=false")
    for i, name, module in list(lora_modules(llm)):
        module.base.kernel.set_value(module.merged_kernel())
        parent = _target_parent(llm.layers[i], name)
        setattr(parent, name, module.base)


def drop_lora(llm) -> None:
    """Remove every adapter, leaving the base projections as they are, in place. A merged model has
    exactly the base's shapes, so an abstract model for compiling inference drops its adapters."""
    for i, name, _module in list(lora_modules(llm)):
        setattr(_target_parent(llm.layers[i], name), name, _module.base)
