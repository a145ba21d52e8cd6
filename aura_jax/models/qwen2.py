"""Qwen2 / Qwen2.5 and Llama decoder-only LMs in Flax NNX, numerically matching
`transformers.Qwen2ForCausalLM` and `LlamaForCausalLM`.

Llama is Qwen2 without the q/k/v biases (`attention_bias`), so one model with a switch serves both
(SmolLM2, Llama-3.x); RoPE comes plain or with Llama-3's frequency scaling (`rope_llama3`).

Pure modules and math: no file I/O (see `aura_jax.hf`), no meshes (parameters
carry logical axis names only). Supports GQA, q/k/v bias, RoPE, tied or untied
embeddings, padding masks, per-layer hidden states and a KV cache.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx, struct

from aura_jax.config import ATTENTION_IMPLS  # looped: `layers.looped_attention` (CPU)
from aura_jax.models.layers import Embed, Linear, RMSNorm, constrain, looped_attention

RESIDUAL = ("batch", None, None)  # logical axes of the residual stream [batch, time, hidden]

MASK_VALUE = -0.7 * float(jnp.finfo(jnp.float32).max)  # finite: fully masked rows stay NaN-free

# model.remat: how a decoder layer is rematerialised in the backward pass ("none": everything the
# backward needs is kept; "full": only the layer input is kept and the layer is recomputed).
REMAT_POLICIES = {
    "full": None,
    "dots_saveable": jax.checkpoint_policies.dots_saveable,
    "dots_with_no_batch_dims_saveable": jax.checkpoint_policies.dots_with_no_batch_dims_saveable,
}


def dot_product_attention(q, k, v, bias):
    """jax.nn.dot_product_attention with an additive bias [b, 1|h, q, s]; GQA by kv-head grouping
    (q [b, t, heads, d], k/v [b, s, kv_heads, d]). implementation=None: cuDNN flash attention
    on GPU where it applies, XLA otherwise."""
    return jax.nn.dot_product_attention(q, k, v, bias=bias.astype(q.dtype), scale=q.shape[-1] ** -0.5)


@dataclasses.dataclass(frozen=True)
class Qwen2Config:
    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int
    head_dim: int
    rope_theta: float = 1_000_000.0
    rms_norm_eps: float = 1e-6
    tie_word_embeddings: bool = False
    max_position_embeddings: int = 32768
    attention_bias: bool = True  # q/k/v biases: Qwen2 has them, Llama has not
    # Llama-3 RoPE scaling: (factor, low_freq_factor, high_freq_factor, original_max_position_embeddings)
    rope_llama3: tuple[float, float, float, int] | None = None
    model_type: str = "qwen2"

    @classmethod
    def from_hf(cls, hf: dict[str, Any]) -> "Qwen2Config":
        """From a Hugging Face config.json dict (transformers v4 or v5 layout) of a Qwen2 or Llama."""
        kind = hf.get("model_type", "qwen2")
        if kind not in MODEL_TYPES:
            raise ValueError(f"model_type {kind!r} is not supported (supported: {', '.join(MODEL_TYPES)})")
        if hf.get("mlp_bias"):
            raise ValueError("mlp_bias=true is not supported (Llama's MLP has no biases)")
        rope = {**(hf.get("rope_scaling") or {}), **(hf.get("rope_parameters") or {})}
        rope_type = rope.get("rope_type") or rope.get("type") or "default"
        llama3 = None
        if rope_type == "llama3":
            try:
                llama3 = (float(rope["factor"]), float(rope["low_freq_factor"]), float(rope["high_freq_factor"]),
                          int(rope["original_max_position_embeddings"]))
            except KeyError as e:
                raise ValueError(f"rope type 'llama3' needs {e.args[0]!r}") from None
        elif rope_type != "default":
            raise ValueError(f"rope type {rope_type!r} is not supported (supported: 'default', 'llama3')")
        theta = rope.get("rope_theta", hf.get("rope_theta", 10_000.0))
        heads = hf["num_attention_heads"]
        return cls(
            vocab_size=hf["vocab_size"],
            hidden_size=hf["hidden_size"],
            intermediate_size=hf["intermediate_size"],
            num_hidden_layers=hf["num_hidden_layers"],
            num_attention_heads=heads,
            num_key_value_heads=hf.get("num_key_value_heads") or heads,
            head_dim=hf.get("head_dim") or hf["hidden_size"] // heads,
            rope_theta=float(theta),
            rms_norm_eps=hf.get("rms_norm_eps", 1e-6),
            tie_word_embeddings=bool(hf.get("tie_word_embeddings", False)),
            max_position_embeddings=hf.get("max_position_embeddings", 32768),
            attention_bias=MODEL_TYPES[kind] if hf.get("attention_bias") is None else bool(hf["attention_bias"]),
            rope_llama3=llama3,
            model_type=kind,
        )


MODEL_TYPES = {"qwen2": True, "llama": False}  # model_type -> its default attention_bias


@struct.dataclass
class KVCache:
    """Keys/values of every layer in fixed-size slots; `index` = slots filled so far."""

    keys: tuple[jax.Array, ...]  # per layer [batch, max_len, kv_heads, head_dim]
    values: tuple[jax.Array, ...]
    key_mask: jax.Array  # [batch, max_len] bool: slot holds a real (non-padding) token
    index: jax.Array  # int32 scalar

    @classmethod
    def create(cls, config: Qwen2Config, batch: int, max_len: int, dtype=jnp.float32) -> "KVCache":
        shape = (batch, max_len, config.num_key_value_heads, config.head_dim)
        zeros = lambda: tuple(jnp.zeros(shape, dtype) for _ in range(config.num_hidden_layers))
        # distinct buffers for keys and values, so a cache can be donated to a jitted prefill
        return cls(zeros(), zeros(), jnp.zeros((batch, max_len), bool), jnp.zeros((), jnp.int32))


@struct.dataclass
class CausalLMOutput:
    logits: jax.Array
    hidden_states: tuple[jax.Array, ...] | None = None
    cache: KVCache | None = None


def rope_inv_freq(head_dim: int, theta: float, llama3: tuple | None = None) -> jax.Array:
    """RoPE's inverse frequencies [head_dim / 2] in float32. `llama3` = (factor, low_freq_factor,
    high_freq_factor, original context): wavelengths longer than original / low_freq_factor are
    stretched by `factor`, shorter than original / high_freq_factor kept, and those between
    interpolated smoothly (Llama 3.1's rule, as transformers computes it)."""
    inv_freq = 1.0 / (theta ** (jnp.arange(0, head_dim, 2, dtype=jnp.float32) / head_dim))
    if llama3 is None:
        return inv_freq
    factor, low, high, original = llama3
    wavelen = 2 * jnp.pi / inv_freq
    scaled = jnp.where(wavelen > original / low, inv_freq / factor, inv_freq)
    smooth = (original / wavelen - low) / (high - low)
    smoothed = (1 - smooth) * scaled / factor + smooth * scaled
    medium = ~(wavelen < original / high) & ~(wavelen > original / low)
    return jnp.where(medium, smoothed, scaled)


def rope_cos_sin(positions: jax.Array, head_dim: int, theta: float, dtype,
                 llama3: tuple | None = None) -> tuple[jax.Array, jax.Array]:
    """cos/sin tables [batch, seq, head_dim] in float32, cast to `dtype` (as transformers does)."""
    inv_freq = rope_inv_freq(head_dim, theta, llama3)
    freqs = positions.astype(jnp.float32)[..., None] * inv_freq
    emb = jnp.concatenate([freqs, freqs], axis=-1)
    return jnp.cos(emb).astype(dtype), jnp.sin(emb).astype(dtype)


def apply_rope(x: jax.Array, cos: jax.Array, sin: jax.Array) -> jax.Array:
    """x: [batch, seq, heads, head_dim]; rotate-half convention of Qwen2/Llama."""
    half = x.shape[-1] // 2
    rotated = jnp.concatenate([-x[..., half:], x[..., :half]], axis=-1)
    return x * cos[:, :, None, :] + rotated * sin[:, :, None, :]


def attention_groups(mask: jax.Array) -> jax.Array:
    """Bidirectional attention groups as int32 ids, −1 = none: a bool mask is one group (True → 0)."""
    return jnp.where(mask, 0, -1).astype(jnp.int32) if mask.dtype == jnp.bool_ else mask.astype(jnp.int32)


def attention_mask_bias(query_slots: jax.Array, key_slots: jax.Array, key_mask: jax.Array,
                        bidirectional: jax.Array | None = None,
                        key_bidirectional: jax.Array | None = None) -> jax.Array:
    """Additive bias [batch, 1, q, k]: causal by slot, padding keys masked.

    `bidirectional` ([batch, q]) / `key_bidirectional` ([batch, k]): positions (the audio tokens)
    that also attend to each other regardless of order — a bool mask (one group), or int group ids
    (−1: none), where only positions of the same group do (chunks of the audio span).
    """
    allowed = key_slots[None, None, :] <= query_slots[None, :, None]
    if bidirectional is not None:
        q, k = attention_groups(bidirectional), attention_groups(key_bidirectional)
        allowed = allowed | ((q[:, :, None] == k[:, None, :]) & (q[:, :, None] >= 0))
    allowed = allowed & key_mask[:, None, :]
    return jnp.where(allowed, 0.0, MASK_VALUE)[:, None, :, :].astype(jnp.float32)


class Qwen2Attention(nnx.Module):
    def __init__(self, config: Qwen2Config, *, rngs: nnx.Rngs, param_dtype, dtype):
        c = config
        self.num_heads, self.num_kv_heads, self.head_dim = c.num_attention_heads, c.num_key_value_heads, c.head_dim
        kw = dict(rngs=rngs, param_dtype=param_dtype, dtype=dtype)
        bias = c.attention_bias
        self.q_proj = Linear(c.hidden_size, c.num_attention_heads * c.head_dim, use_bias=bias, axes=("embed", "heads"), **kw)
        self.k_proj = Linear(c.hidden_size, c.num_key_value_heads * c.head_dim, use_bias=bias, axes=("embed", "kv_heads"), **kw)
        self.v_proj = Linear(c.hidden_size, c.num_key_value_heads * c.head_dim, use_bias=bias, axes=("embed", "kv_heads"), **kw)
        self.o_proj = Linear(c.num_attention_heads * c.head_dim, c.hidden_size, use_bias=False, axes=("heads", "embed"), **kw)
        self.attention = "xla"  # or "dot_product" (see `Qwen2ForCausalLM.set_speed_options`)

    def __call__(self, x, cos, sin, bias, cache_kv=None, cache_index=None, adapter_mask=None):
        b, t, _ = x.shape
        q = self.q_proj(x, adapter_mask).reshape(b, t, self.num_heads, self.head_dim)
        k = self.k_proj(x, adapter_mask).reshape(b, t, self.num_kv_heads, self.head_dim)
        v = self.v_proj(x, adapter_mask).reshape(b, t, self.num_kv_heads, self.head_dim)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        if cache_kv is not None:  # write the new keys/values at the cache cursor, attend over all slots
            k_all = jax.lax.dynamic_update_slice_in_dim(cache_kv[0], k.astype(cache_kv[0].dtype), cache_index, axis=1)
            v_all = jax.lax.dynamic_update_slice_in_dim(cache_kv[1], v.astype(cache_kv[1].dtype), cache_index, axis=1)
            k, v, new_kv = k_all.astype(q.dtype), v_all.astype(q.dtype), (k_all, v_all)
        else:
            new_kv = None
        if self.attention == "dot_product":
            out = dot_product_attention(q, k, v, bias).reshape(b, t, self.num_heads * self.head_dim)
            return self.o_proj(out, adapter_mask), new_kv
        if self.attention == "looped":
            out = looped_attention(q, k, v, bias, self.head_dim ** -0.5)
            return self.o_proj(out.reshape(b, t, self.num_heads * self.head_dim), adapter_mask), new_kv
        groups = self.num_heads // self.num_kv_heads
        q = q.reshape(b, t, self.num_kv_heads, groups, self.head_dim)
        scores = jnp.einsum("bqkgd,bskd->bkgqs", q, k).astype(jnp.float32) / jnp.sqrt(float(self.head_dim))
        scores = scores + bias[:, :, None, :, :]  # bias [b,1,q,s] -> [b,1,1,q,s]
        probs = jax.nn.softmax(scores, axis=-1).astype(v.dtype)
        out = jnp.einsum("bkgqs,bskd->bqkgd", probs, v).reshape(b, t, self.num_heads * self.head_dim)
        return self.o_proj(out, adapter_mask), new_kv


class Qwen2MLP(nnx.Module):
    def __init__(self, config: Qwen2Config, *, rngs: nnx.Rngs, param_dtype, dtype):
        kw = dict(rngs=rngs, param_dtype=param_dtype, dtype=dtype, use_bias=False)
        self.gate_proj = Linear(config.hidden_size, config.intermediate_size, axes=("embed", "mlp"), **kw)
        self.up_proj = Linear(config.hidden_size, config.intermediate_size, axes=("embed", "mlp"), **kw)
        self.down_proj = Linear(config.intermediate_size, config.hidden_size, axes=("mlp", "embed"), **kw)

    def __call__(self, x, adapter_mask=None):
        m = adapter_mask
        return self.down_proj(jax.nn.silu(self.gate_proj(x, m)) * self.up_proj(x, m), m)


class Qwen2DecoderLayer(nnx.Module):
    def __init__(self, config: Qwen2Config, *, rngs: nnx.Rngs, param_dtype, dtype):
        kw = dict(rngs=rngs, param_dtype=param_dtype, dtype=dtype)
        self.input_layernorm = RMSNorm(config.hidden_size, eps=config.rms_norm_eps, rngs=rngs, param_dtype=param_dtype)
        self.self_attn = Qwen2Attention(config, **kw)
        self.post_attention_layernorm = RMSNorm(config.hidden_size, eps=config.rms_norm_eps, rngs=rngs, param_dtype=param_dtype)
        self.mlp = Qwen2MLP(config, **kw)

    def __call__(self, x, cos, sin, bias, cache_kv=None, cache_index=None, adapter_mask=None):
        """adapter_mask [batch, time] bool: where audio-only LoRA acts (`models.lora`); None: nowhere."""
        attn, new_kv = self.self_attn(self.input_layernorm(x), cos, sin, bias, cache_kv, cache_index, adapter_mask)
        x = x + attn
        x = x + self.mlp(self.post_attention_layernorm(x), adapter_mask)
        return x, new_kv


class Qwen2ForCausalLM(nnx.Module):
    """`model(input_ids=..., attention_mask=...)` → CausalLMOutput(logits, hidden_states, cache).

    Positions default to `cumsum(attention_mask) - 1`, which is right for left and
    right padding alike (transformers' plain forward uses `arange`, identical
    without left padding; its `generate` uses the cumsum form too).
    `hidden_states` follows transformers: [0] = embeddings, [i] = output of layer i,
    and the last entry has the final norm applied.
    """

    def __init__(self, config: Qwen2Config, *, rngs: nnx.Rngs, param_dtype=jnp.float32, dtype=jnp.float32):
        self.config, self.dtype = config, dtype
        self.embed_tokens = Embed(config.vocab_size, config.hidden_size, rngs=rngs, param_dtype=param_dtype, dtype=dtype)
        self.embed_tokens.tied = config.tie_word_embeddings
        self.layers = nnx.List([Qwen2DecoderLayer(config, rngs=rngs, param_dtype=param_dtype, dtype=dtype)
                                for _ in range(config.num_hidden_layers)])
        self.norm = RMSNorm(config.hidden_size, eps=config.rms_norm_eps, rngs=rngs, param_dtype=param_dtype)
        self.lm_head = (None if config.tie_word_embeddings else
                        Linear(config.hidden_size, config.vocab_size, use_bias=False, axes=("embed", "vocab"),
                               rngs=rngs, param_dtype=param_dtype, dtype=dtype))
        self.remat, self.scan_from = "none", None

    def set_speed_options(self, *, remat: str = "none", attention: str = "xla", scan_from: int | None = None):
        """remat: a `REMAT_POLICIES` key or "none" (every decoder layer, training forward without cache);
        attention: one of ATTENTION_IMPLS; scan_from: run layers [scan_from:] (identical, no LoRA) as one
        lax.scan over their stacked weights (None: a Python loop)."""
        if remat != "none" and remat not in REMAT_POLICIES:
            raise ValueError(f"remat={remat!r}: use none or one of {', '.join(REMAT_POLICIES)}")
        if attention not in ATTENTION_IMPLS:
            raise ValueError(f"attention={attention!r}: use one of {', '.join(ATTENTION_IMPLS)}")
        if scan_from is not None and not 0 <= scan_from < len(self.layers):
            raise ValueError(f"scan_from={scan_from} is outside the {len(self.layers)} layers")
        self.remat, self.scan_from = remat, scan_from
        for layer in self.layers:
            layer.self_attn.attention = attention

    def _run_layers(self, x, cos, sin, bias, hidden, adapter_mask=None):
        """The training forward (no cache): Python loop, optionally rematerialised / scanned."""
        policy = REMAT_POLICIES.get(self.remat)

        def apply(graphdef, state, x):
            return nnx.merge(graphdef, state)(x, cos, sin, bias, adapter_mask=adapter_mask)[0]

        if self.remat != "none":
            apply = jax.checkpoint(apply, policy=policy, static_argnums=(0,))
        layers = list(self.layers)
        loop = layers if self.scan_from is None else layers[:self.scan_from]
        for layer in loop:
            if self.remat == "none":
                x = layer(x, cos, sin, bias, adapter_mask=adapter_mask)[0]
            else:
                graphdef, state = nnx.split(layer)
                x = apply(graphdef, state, x)
            x = constrain(x, RESIDUAL)
            if hidden is not None:
                hidden.append(x)
        if self.scan_from is not None:
            splits = [nnx.split(layer) for layer in layers[self.scan_from:]]
            graphdef = splits[0][0]
            if any(gd != graphdef for gd, _ in splits[1:]):
                raise ValueError(f"scan_layers: layers {self.scan_from}.. differ in structure (LoRA in them?)")
            stacked = jax.tree.map(lambda *xs: jnp.stack(xs), *[st for _, st in splits])

            def body(carry, state):
                y = constrain(apply(graphdef, state, carry), RESIDUAL)
                return y, (y if hidden is not None else None)

            x, ys = jax.lax.scan(body, x, stacked)
            if hidden is not None:
                hidden.extend(ys[i] for i in range(ys.shape[0]))
        return x

    def embed(self, input_ids: jax.Array) -> jax.Array:
        return self.embed_tokens(input_ids)

    def lm_logits(self, x: jax.Array) -> jax.Array:
        """The LM head on final-normed states [..., hidden] → [..., vocab] (the tied embedding when
        the model has no separate head)."""
        return self.embed_tokens.attend(x) if self.lm_head is None else self.lm_head(x)

    def __call__(self, input_ids=None, *, inputs_embeds=None, attention_mask=None, positions=None,
                 output_hidden_states: bool = False, cache: KVCache | None = None,
                 bidirectional_mask=None, logits_to_keep: int | jax.Array | None = None,
                 adapter_mask=None) -> CausalLMOutput:
        """`logits_to_keep`: an int k gives the logits of only the last k positions ([batch, k, vocab]);
        generation's prefill needs the last one, and the LM head over every prompt position is most
        of a small model's prefill (transformers' `generate` does the same). An int array
        [batch, k] gives the logits at those positions of each row: training's CE needs only the
        positions that predict a text token, not the audio ones. `adapter_mask` [batch, t]: where
        audio-only LoRA adapters act (the audio tokens; `models.lora`); the paper's adapters ignore it."""
        x = self.embed(input_ids) if inputs_embeds is None else inputs_embeds.astype(self.dtype)
        x = constrain(x, RESIDUAL)
        b, t, _ = x.shape
        mask = jnp.ones((b, t), bool) if attention_mask is None else attention_mask.astype(bool)
        start = jnp.zeros((), jnp.int32) if cache is None else cache.index
        if cache is None:
            key_mask, key_slots = mask, jnp.arange(t)
            key_bidir = bidirectional_mask
        else:
            key_mask = jax.lax.dynamic_update_slice_in_dim(cache.key_mask, mask, start, axis=1)
            key_slots = jnp.arange(cache.key_mask.shape[1])
            key_bidir = None if bidirectional_mask is None else jax.lax.dynamic_update_slice_in_dim(
                jnp.full(cache.key_mask.shape, -1, jnp.int32), attention_groups(bidirectional_mask), start, axis=1)
        if positions is None:
            # Count real tokens before each slot (including those already cached).
            seen = jnp.cumsum(key_mask.astype(jnp.int32), axis=1) - 1
            positions = jnp.maximum(jax.lax.dynamic_slice_in_dim(seen, start, t, axis=1), 0)
        cos, sin = rope_cos_sin(positions, self.config.head_dim, self.config.rope_theta, x.dtype,
                                self.config.rope_llama3)
        bias = attention_mask_bias(start + jnp.arange(t), key_slots, key_mask, bidirectional_mask, key_bidir)

        hidden = [x] if output_hidden_states else None
        new_keys, new_values = [], []
        fast = cache is None and (self.remat != "none" or self.scan_from is not None)
        if fast:
            x = self._run_layers(x, cos, sin, bias, hidden, adapter_mask)
        for i, layer in enumerate([] if fast else self.layers):
            cache_kv = None if cache is None else (cache.keys[i], cache.values[i])
            x, new_kv = layer(x, cos, sin, bias, cache_kv, start, adapter_mask)
            x = constrain(x, RESIDUAL)
            if new_kv is not None:
                new_keys.append(new_kv[0])
                new_values.append(new_kv[1])
            if hidden is not None:
                hidden.append(x)
        x = self.norm(x)
        if hidden is not None:
            hidden[-1] = x
        if isinstance(logits_to_keep, int):
            x = x[:, -logits_to_keep:]
        elif logits_to_keep is not None:
            x = jnp.take_along_axis(x, logits_to_keep[..., None], axis=1)
        logits = constrain(self.lm_logits(x), ("batch", None, "vocab"))
        new_cache = None if cache is None else KVCache(tuple(new_keys), tuple(new_values), key_mask, start + t)
        return CausalLMOutput(logits=logits, hidden_states=tuple(hidden) if hidden else None, cache=new_cache)
