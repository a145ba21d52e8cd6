"""Whisper encoder (the AuRA teacher) and decoder (the cascade baseline's ASR) in
Flax NNX, numerically matching `transformers.WhisperModel.encoder` / `.decoder`
(+ the tied `proj_out` of `WhisperForConditionalGeneration`).

The teacher never needs more layers than the deepest one it is paired with, so
the encoder can be built with only its first `num_layers` layers.
`hidden_states` is indexed like transformers: [0] = conv stem + positions,
[i] = output of layer i; when every layer is present the last entry has the
final LayerNorm applied, as in transformers.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx, struct

from aura_jax.models.layers import Embed, LayerNorm, Linear, constrain, looped_attention, param
from aura_jax.models.qwen2 import ATTENTION_IMPLS, MASK_VALUE, RESIDUAL


def _check_activation(hf: dict[str, Any]) -> None:
    act = hf.get("activation_function", "gelu")
    if act != "gelu":
        raise ValueError(f"config.json: activation_function {act!r} is not supported (only 'gelu')")


@dataclasses.dataclass(frozen=True)
class WhisperEncoderConfig:
    d_model: int
    encoder_layers: int
    encoder_attention_heads: int
    encoder_ffn_dim: int
    num_mel_bins: int = 128
    max_source_positions: int = 1500

    @classmethod
    def from_hf(cls, hf: dict[str, Any]) -> "WhisperEncoderConfig":
        _check_activation(hf)
        return cls(d_model=hf["d_model"], encoder_layers=hf["encoder_layers"],
                   encoder_attention_heads=hf["encoder_attention_heads"], encoder_ffn_dim=hf["encoder_ffn_dim"],
                   num_mel_bins=hf.get("num_mel_bins", 80), max_source_positions=hf.get("max_source_positions", 1500))

    @property
    def num_input_frames(self) -> int:
        return 2 * self.max_source_positions  # conv2 has stride 2


@struct.dataclass
class EncoderOutput:
    last_hidden_state: jax.Array
    hidden_states: tuple[jax.Array, ...] | None = None


class Conv1d(nnx.Module):
    """Channels-last 1-D convolution, kernel [width, in, out] (torch stores [out, in, width])."""

    def __init__(self, in_ch, out_ch, width, stride, *, rngs, param_dtype, dtype):
        self.stride, self.dtype = stride, dtype
        self.kernel = param(rngs, nnx.initializers.lecun_normal(), (width, in_ch, out_ch), param_dtype, (None, "conv_in", "embed"))
        self.bias = param(rngs, nnx.initializers.zeros, (out_ch,), param_dtype, ("embed",))

    def __call__(self, x):  # x [batch, time, channels]
        pad = self.kernel.shape[0] // 2
        y = jax.lax.conv_general_dilated(x.astype(self.dtype), self.kernel[...].astype(self.dtype),
                                         window_strides=(self.stride,), padding=[(pad, pad)],
                                         dimension_numbers=("NWC", "WIO", "NWC"))
        return y + self.bias[...].astype(self.dtype)


class WhisperAttention(nnx.Module):
    """Multi-head attention with q/v/out bias and no k bias (Whisper's encoder self-attention and
    the decoder's self- and cross-attention)."""

    def __init__(self, d_model: int, num_heads: int, *, rngs, param_dtype, dtype):
        self.num_heads, self.head_dim = num_heads, d_model // num_heads
        kw = dict(rngs=rngs, param_dtype=param_dtype, dtype=dtype)
        self.q_proj = Linear(d_model, d_model, use_bias=True, axes=("embed", "heads"), **kw)
        self.k_proj = Linear(d_model, d_model, use_bias=False, axes=("embed", "heads"), **kw)
        self.v_proj = Linear(d_model, d_model, use_bias=True, axes=("embed", "heads"), **kw)
        self.out_proj = Linear(d_model, d_model, use_bias=True, axes=("heads", "embed"), **kw)
        self.attention = "xla"  # or "dot_product" (cuDNN flash on GPU) or "looped" (CPU): see ATTENTION_IMPLS

    def split_heads(self, y: jax.Array) -> jax.Array:
        return y.reshape(*y.shape[:2], self.num_heads, self.head_dim)

    def keys_values(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        """k, v [batch, seq, heads, head_dim] of `x` (the decoder caches these)."""
        return self.split_heads(self.k_proj(x)), self.split_heads(self.v_proj(x))

    def __call__(self, x, kv: tuple[jax.Array, jax.Array] | None = None, bias: jax.Array | None = None):
        """Self-attention over `x`, or `x`'s queries over given keys/values `kv`; `bias` is additive
        [batch|1, 1, q, k] (None: attend everywhere)."""
        b, t, d = x.shape
        q = self.split_heads(self.q_proj(x))
        k, v = self.keys_values(x) if kv is None else kv
        if self.attention == "dot_product":
            out = jax.nn.dot_product_attention(q, k, v, bias=None if bias is None else bias.astype(q.dtype),
                                               scale=self.head_dim ** -0.5)
            return self.out_proj(out.reshape(b, t, d))
        if self.attention == "looped":
            return self.out_proj(looped_attention(q, k, v, bias, self.head_dim ** -0.5).reshape(b, t, d))
        scores = jnp.einsum("bqhd,bkhd->bhqk", q, k).astype(jnp.float32) * self.head_dim ** -0.5
        if bias is not None:
            scores = scores + bias
        probs = jax.nn.softmax(scores, axis=-1).astype(v.dtype)
        return self.out_proj(jnp.einsum("bhqk,bkhd->bqhd", probs, v).reshape(b, t, d))


class WhisperEncoderLayer(nnx.Module):
    def __init__(self, config: WhisperEncoderConfig, *, rngs, param_dtype, dtype):
        kw = dict(rngs=rngs, param_dtype=param_dtype, dtype=dtype)
        d = config.d_model
        self.self_attn_layer_norm = LayerNorm(d, rngs=rngs, param_dtype=param_dtype)
        self.self_attn = WhisperAttention(d, config.encoder_attention_heads, **kw)
        self.final_layer_norm = LayerNorm(d, rngs=rngs, param_dtype=param_dtype)
        self.fc1 = Linear(d, config.encoder_ffn_dim, use_bias=True, axes=("embed", "mlp"), **kw)
        self.fc2 = Linear(config.encoder_ffn_dim, d, use_bias=True, axes=("mlp", "embed"), **kw)

    def __call__(self, x):
        x = x + self.self_attn(self.self_attn_layer_norm(x))
        return x + self.fc2(jax.nn.gelu(self.fc1(self.final_layer_norm(x)), approximate=False))


class WhisperEncoder(nnx.Module):
    """`encoder(input_features=[batch, mel, 3000])` → EncoderOutput(last_hidden_state, hidden_states)."""

    def __init__(self, config: WhisperEncoderConfig, *, num_layers: int | None = None, rngs: nnx.Rngs,
                 param_dtype=jnp.float32, dtype=jnp.float32):
        n = config.encoder_layers if num_layers is None else num_layers
        if not 1 <= n <= config.encoder_layers:
            raise ValueError(f"teacher num_layers={n} is out of range: the Whisper encoder has "
                             f"{config.encoder_layers} layers")
        self.config, self.num_layers, self.dtype = config, n, dtype
        kw = dict(rngs=rngs, param_dtype=param_dtype, dtype=dtype)
        self.conv1 = Conv1d(config.num_mel_bins, config.d_model, 3, 1, **kw)
        self.conv2 = Conv1d(config.d_model, config.d_model, 3, 2, **kw)
        self.embed_positions = param(rngs, nnx.initializers.zeros, (config.max_source_positions, config.d_model),
                                     param_dtype, (None, "embed"))
        self.layers = nnx.List([WhisperEncoderLayer(config, **kw) for _ in range(n)])
        # The final LayerNorm only exists when the encoder is complete.
        self.layer_norm = LayerNorm(config.d_model, rngs=rngs, param_dtype=param_dtype) if self.is_complete else None

    def set_attention(self, attention: str) -> None:
        """One of `ATTENTION_IMPLS`: "xla" (einsum softmax), "dot_product", "looped" (CPU)."""
        if attention not in ATTENTION_IMPLS:
            raise ValueError(f"attention={attention!r}: use one of {', '.join(ATTENTION_IMPLS)}")
        for layer in self.layers:
            layer.self_attn.attention = attention

    @property
    def is_complete(self) -> bool:
        return self.num_layers == self.config.encoder_layers

    def __call__(self, input_features: jax.Array, output_hidden_states: bool = False) -> EncoderOutput:
        mels, frames = input_features.shape[1:]
        if mels != self.config.num_mel_bins or not (frames == self.config.num_input_frames or
                                                     (frames % 2 == 0 and frames < self.config.num_input_frames)):
            raise ValueError(f"Whisper input_features must be [batch, {self.config.num_mel_bins}, "
                             f"{self.config.num_input_frames}] (or an even number of frames fewer: "
                             f"audio.teacher_frames), got {tuple(input_features.shape)}")
        x = jnp.swapaxes(input_features, 1, 2).astype(self.dtype)  # [batch, frames, mel]
        x = jax.nn.gelu(self.conv1(x), approximate=False)
        x = jax.nn.gelu(self.conv2(x), approximate=False)
        x = constrain(x + self.embed_positions[: x.shape[1]].astype(self.dtype)[None], RESIDUAL)
        hidden = [x]
        for layer in self.layers:
            x = constrain(layer(x), RESIDUAL)
            hidden.append(x)
        if self.layer_norm is not None:
            x = self.layer_norm(x)
            hidden[-1] = x
        return EncoderOutput(last_hidden_state=x, hidden_states=tuple(hidden) if output_hidden_states else None)


# ---------------------------------------------------------------------------
# Decoder (the cascade baseline transcribes with it; AuRA itself never needs it)
# ---------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class WhisperDecoderConfig:
    d_model: int
    decoder_layers: int
    decoder_attention_heads: int
    decoder_ffn_dim: int
    vocab_size: int
    max_target_positions: int = 448
    scale_embedding: bool = False  # False for every released Whisper; True multiplies embeddings by sqrt(d_model)

    @classmethod
    def from_hf(cls, hf: dict[str, Any]) -> "WhisperDecoderConfig":
        _check_activation(hf)
        return cls(d_model=hf["d_model"], decoder_layers=hf["decoder_layers"],
                   decoder_attention_heads=hf["decoder_attention_heads"], decoder_ffn_dim=hf["decoder_ffn_dim"],
                   vocab_size=hf["vocab_size"], max_target_positions=hf.get("max_target_positions", 448),
                   scale_embedding=bool(hf.get("scale_embedding", False)))

    @property
    def head_dim(self) -> int:
        return self.d_model // self.decoder_attention_heads


@struct.dataclass
class WhisperDecoderCache:
    """Self-attention K/V of every layer in fixed-size slots (`index` = slots filled so far) and the
    cross-attention K/V of the encoder output, computed once per utterance."""

    keys: tuple[jax.Array, ...]  # per layer [batch, max_len, heads, head_dim]
    values: tuple[jax.Array, ...]
    cross_keys: tuple[jax.Array, ...]  # per layer [batch, source_len, heads, head_dim]
    cross_values: tuple[jax.Array, ...]
    index: jax.Array  # int32 scalar

    @classmethod
    def create(cls, decoder: "WhisperDecoder", encoder_hidden_states: jax.Array, max_len: int,
               dtype=None) -> "WhisperDecoderCache":
        """An empty self-attention cache of `max_len` slots plus the cross K/V of `encoder_hidden_states`."""
        config = decoder.config
        if max_len > config.max_target_positions:
            raise ValueError(f"decoder cache of {max_len} slots exceeds max_target_positions="
                             f"{config.max_target_positions} (prompt + max_new_tokens is too long)")
        dtype = dtype or decoder.dtype
        shape = (encoder_hidden_states.shape[0], max_len, config.decoder_attention_heads, config.head_dim)
        zeros = tuple(jnp.zeros(shape, dtype) for _ in range(config.decoder_layers))
        cross = decoder.cross_keys_values(encoder_hidden_states)
        return cls(zeros, zeros, tuple(k.astype(dtype) for k, _ in cross), tuple(v.astype(dtype) for _, v in cross),
                   jnp.zeros((), jnp.int32))

    @classmethod
    def abstract(cls, config: WhisperDecoderConfig, batch: int, max_len: int, source_len: int,
                 dtype=jnp.float32) -> "WhisperDecoderCache":
        """The cache as `jax.ShapeDtypeStruct`s: lowering a decode step ahead of time needs no encoder run."""
        def sds(length):
            return jax.ShapeDtypeStruct((batch, length, config.decoder_attention_heads, config.head_dim), dtype)

        n = config.decoder_layers
        return cls(tuple(sds(max_len) for _ in range(n)), tuple(sds(max_len) for _ in range(n)),
                   tuple(sds(source_len) for _ in range(n)), tuple(sds(source_len) for _ in range(n)),
                   jax.ShapeDtypeStruct((), jnp.int32))


@struct.dataclass
class WhisperDecoderOutput:
    logits: jax.Array  # [batch, t, vocab]
    cache: WhisperDecoderCache | None = None


class WhisperDecoderLayer(nnx.Module):
    def __init__(self, config: WhisperDecoderConfig, *, rngs, param_dtype, dtype):
        kw = dict(rngs=rngs, param_dtype=param_dtype, dtype=dtype)
        d = config.d_model
        self.self_attn_layer_norm = LayerNorm(d, rngs=rngs, param_dtype=param_dtype)
        self.self_attn = WhisperAttention(d, config.decoder_attention_heads, **kw)
        self.encoder_attn_layer_norm = LayerNorm(d, rngs=rngs, param_dtype=param_dtype)
        self.encoder_attn = WhisperAttention(d, config.decoder_attention_heads, **kw)
        self.final_layer_norm = LayerNorm(d, rngs=rngs, param_dtype=param_dtype)
        self.fc1 = Linear(d, config.decoder_ffn_dim, use_bias=True, axes=("embed", "mlp"), **kw)
        self.fc2 = Linear(config.decoder_ffn_dim, d, use_bias=True, axes=("mlp", "embed"), **kw)

    def __call__(self, x, bias, cross_kv, cache_kv=None, cache_index=None):
        """→ (x, new cache_kv); with `cache_kv` the new keys/values are written at `cache_index` and the
        queries attend over every slot (`bias` masks the ones not yet written)."""
        h = self.self_attn_layer_norm(x)
        k, v = self.self_attn.keys_values(h)
        new_kv = None
        if cache_kv is not None:
            k_all = jax.lax.dynamic_update_slice_in_dim(cache_kv[0], k.astype(cache_kv[0].dtype), cache_index, axis=1)
            v_all = jax.lax.dynamic_update_slice_in_dim(cache_kv[1], v.astype(cache_kv[1].dtype), cache_index, axis=1)
            k, v, new_kv = k_all.astype(h.dtype), v_all.astype(h.dtype), (k_all, v_all)
        x = x + self.self_attn(h, (k, v), bias)
        x = x + self.encoder_attn(self.encoder_attn_layer_norm(x), cross_kv)
        x = x + self.fc2(jax.nn.gelu(self.fc1(self.final_layer_norm(x)), approximate=False))
        return x, new_kv


class WhisperDecoder(nnx.Module):
    """`decoder(input_ids [batch, t], encoder_hidden_states, cache=None)` → WhisperDecoderOutput(logits, cache).

    Without a cache: a teacher-forced forward from position 0 (cross K/V from `encoder_hidden_states`).
    With a cache (`WhisperDecoderCache.create`): `input_ids` continue at `cache.index`, cross K/V come
    from the cache (`encoder_hidden_states` may be None), and the returned cache has them appended.
    Logits use the tied output projection (`proj_out` = `embed_tokens`), in the compute dtype.
    """

    def __init__(self, config: WhisperDecoderConfig, *, rngs: nnx.Rngs, param_dtype=jnp.float32, dtype=jnp.float32):
        self.config, self.dtype = config, dtype
        kw = dict(rngs=rngs, param_dtype=param_dtype, dtype=dtype)
        self.embed_tokens = Embed(config.vocab_size, config.d_model, **kw)
        self.embed_positions = param(rngs, nnx.initializers.zeros, (config.max_target_positions, config.d_model),
                                     param_dtype, (None, "embed"))
        self.layers = nnx.List([WhisperDecoderLayer(config, **kw) for _ in range(config.decoder_layers)])
        self.layer_norm = LayerNorm(config.d_model, rngs=rngs, param_dtype=param_dtype)

    def set_attention(self, attention: str) -> None:
        """One of `ATTENTION_IMPLS`: "xla" (einsum softmax), "dot_product", "looped" (CPU)."""
        if attention not in ATTENTION_IMPLS:
            raise ValueError(f"attention={attention!r}: use one of {', '.join(ATTENTION_IMPLS)}")
        for layer in self.layers:
            layer.self_attn.attention = layer.encoder_attn.attention = attention

    def cross_keys_values(self, encoder_hidden_states: jax.Array) -> list[tuple[jax.Array, jax.Array]]:
        """Per layer (k, v) [batch, source_len, heads, head_dim] of the encoder output."""
        x = encoder_hidden_states.astype(self.dtype)
        return [layer.encoder_attn.keys_values(x) for layer in self.layers]

    def __call__(self, input_ids: jax.Array, encoder_hidden_states: jax.Array | None = None, *,
                 cache: WhisperDecoderCache | None = None) -> WhisperDecoderOutput:
        b, t = input_ids.shape
        if cache is None:
            if encoder_hidden_states is None:
                raise ValueError("WhisperDecoder needs encoder_hidden_states or a cache holding their keys/values")
            if t > self.config.max_target_positions:
                raise ValueError(f"{t} decoder tokens exceed max_target_positions={self.config.max_target_positions}")
            start, key_slots = jnp.zeros((), jnp.int32), jnp.arange(t)
            cross = self.cross_keys_values(encoder_hidden_states)
        else:
            start, key_slots = cache.index, jnp.arange(cache.keys[0].shape[1])
            cross = [(k.astype(self.dtype), v.astype(self.dtype)) for k, v in zip(cache.cross_keys, cache.cross_values)]
        # Learned absolute positions by slot (decoder prompts are never padded, so slot = position).
        positions = jax.lax.dynamic_slice_in_dim(self.embed_positions[...], start, t, axis=0)
        x = self.embed_tokens(input_ids)
        if self.config.scale_embedding:
            x = x * jnp.sqrt(jnp.asarray(self.config.d_model, x.dtype))
        x = x + positions.astype(self.dtype)[None]
        # Causal by slot; cache slots not yet written lie after every query, so this masks them too.
        allowed = key_slots[None, :] <= (start + jnp.arange(t))[:, None]
        bias = jnp.where(allowed, 0.0, MASK_VALUE)[None, None].astype(jnp.float32)
        new_keys, new_values = [], []
        for i, layer in enumerate(self.layers):
            cache_kv = None if cache is None else (cache.keys[i], cache.values[i])
            x, new_kv = layer(x, bias, cross[i], cache_kv, start)
            if new_kv is not None:
                new_keys.append(new_kv[0])
                new_values.append(new_kv[1])
        logits = self.embed_tokens.attend(self.layer_norm(x))
        new_cache = None if cache is None else cache.replace(keys=tuple(new_keys), values=tuple(new_values),
                                                             index=start + t)
        return WhisperDecoderOutput(logits=logits, cache=new_cache)
