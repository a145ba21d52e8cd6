"""Whisper encoder (the AuRA teacher) in Flax NNX, numerically matching
`transformers.WhisperModel.encoder`.

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

from aura_jax.models.layers import LayerNorm, Linear, param


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
        act = hf.get("activation_function", "gelu")
        if act != "gelu":
            raise ValueError(f"config.json: activation_function {act!r} is not supported (only 'gelu')")
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
    def __init__(self, d_model: int, num_heads: int, *, rngs, param_dtype, dtype):
        self.num_heads, self.head_dim = num_heads, d_model // num_heads
        kw = dict(rngs=rngs, param_dtype=param_dtype, dtype=dtype)
        self.q_proj = Linear(d_model, d_model, use_bias=True, axes=("embed", "heads"), **kw)
        self.k_proj = Linear(d_model, d_model, use_bias=False, axes=("embed", "heads"), **kw)
        self.v_proj = Linear(d_model, d_model, use_bias=True, axes=("embed", "heads"), **kw)
        self.out_proj = Linear(d_model, d_model, use_bias=True, axes=("heads", "embed"), **kw)
        self.attention = "xla"  # or "dot_product": jax.nn.dot_product_attention (cuDNN flash on GPU)

    def __call__(self, x):
        b, t, d = x.shape
        split = lambda y: y.reshape(b, t, self.num_heads, self.head_dim)
        q, k, v = split(self.q_proj(x)), split(self.k_proj(x)), split(self.v_proj(x))
        if self.attention == "dot_product":
            out = jax.nn.dot_product_attention(q, k, v, scale=self.head_dim ** -0.5)
            return self.out_proj(out.reshape(b, t, d))
        scores = jnp.einsum("bqhd,bkhd->bhqk", q, k).astype(jnp.float32) * self.head_dim ** -0.5
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
        """"xla" (explicit einsum softmax) or "dot_product" (jax.nn.dot_product_attention)."""
        if attention not in ("xla", "dot_product"):
            raise ValueError(f"attention={attention!r}: use xla or dot_product")
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
        x = x + self.embed_positions[: x.shape[1]].astype(self.dtype)[None]
        hidden = [x]
        for layer in self.layers:
            x = layer(x)
            hidden.append(x)
        if self.layer_norm is not None:
            x = self.layer_norm(x)
            hidden[-1] = x
        return EncoderOutput(last_hidden_state=x, hidden_states=tuple(hidden) if output_hidden_states else None)
