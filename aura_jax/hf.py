"""Hugging Face checkpoints ↔ NNX state.

Conversion is a key table: each rule maps an NNX parameter path (regex) to a
Hugging Face tensor name (template) plus a transform. Import walks the NNX
model's own parameter paths, so a missing or extra layer is noticed; export
(later) walks the same table backwards. Safetensors are read lazily through a
memory map, tensor by tensor, so a sharded 7B never needs two copies in memory.
"""

from __future__ import annotations

import json
import re
import struct
from pathlib import Path
from typing import Callable

import jax.numpy as jnp
import ml_dtypes
import numpy as np
from flax import nnx

from aura_jax.models.qwen2 import Qwen2Config, Qwen2ForCausalLM
from aura_jax.models.whisper import WhisperDecoder, WhisperDecoderConfig, WhisperEncoder, WhisperEncoderConfig


class CheckpointError(ValueError):
    """A Hugging Face directory that cannot be loaded; the message names the file."""


# ---------------------------------------------------------------------------
# Key tables: (NNX path regex, HF name template, transform)
# ---------------------------------------------------------------------------
QWEN2_RULES = [
    (r"embed_tokens\.embedding", "model.embed_tokens.weight", None),
    (r"layers\.(\d+)\.(self_attn|mlp)\.(\w+_proj)\.kernel", "model.layers.{0}.{1}.{2}.weight", "linear"),
    (r"layers\.(\d+)\.self_attn\.(\w+_proj)\.bias", "model.layers.{0}.self_attn.{1}.bias", None),
    (r"layers\.(\d+)\.(input_layernorm|post_attention_layernorm)\.scale", "model.layers.{0}.{1}.weight", None),
    (r"norm\.scale", "model.norm.weight", None),
    (r"lm_head\.kernel", "lm_head.weight", "linear"),
]

WHISPER_ENCODER_RULES = [  # relative to the encoder prefix ("model.encoder." or "encoder.")
    (r"(conv[12])\.kernel", "{0}.weight", "conv"),
    (r"(conv[12])\.bias", "{0}.bias", None),
    (r"embed_positions", "embed_positions.weight", None),
    (r"layers\.(\d+)\.self_attn\.(\w+_proj)\.kernel", "layers.{0}.self_attn.{1}.weight", "linear"),
    (r"layers\.(\d+)\.self_attn\.(\w+_proj)\.bias", "layers.{0}.self_attn.{1}.bias", None),
    (r"layers\.(\d+)\.(fc[12])\.kernel", "layers.{0}.{1}.weight", "linear"),
    (r"layers\.(\d+)\.(fc[12])\.bias", "layers.{0}.{1}.bias", None),
    (r"layers\.(\d+)\.(self_attn_layer_norm|final_layer_norm)\.scale", "layers.{0}.{1}.weight", None),
    (r"layers\.(\d+)\.(self_attn_layer_norm|final_layer_norm)\.bias", "layers.{0}.{1}.bias", None),
    (r"layer_norm\.scale", "layer_norm.weight", None),
    (r"layer_norm\.bias", "layer_norm.bias", None),
]

WHISPER_DECODER_RULES = [  # relative to the decoder prefix ("model.decoder." or "decoder.")
    (r"embed_tokens\.embedding", "embed_tokens.weight", None),  # also the tied proj_out
    (r"embed_positions", "embed_positions.weight", None),
    (r"layers\.(\d+)\.(self_attn|encoder_attn)\.(\w+_proj)\.kernel", "layers.{0}.{1}.{2}.weight", "linear"),
    (r"layers\.(\d+)\.(self_attn|encoder_attn)\.(\w+_proj)\.bias", "layers.{0}.{1}.{2}.bias", None),
    (r"layers\.(\d+)\.(fc[12])\.kernel", "layers.{0}.{1}.weight", "linear"),
    (r"layers\.(\d+)\.(fc[12])\.bias", "layers.{0}.{1}.bias", None),
    (r"layers\.(\d+)\.(self_attn_layer_norm|encoder_attn_layer_norm|final_layer_norm)\.scale",
     "layers.{0}.{1}.weight", None),
    (r"layers\.(\d+)\.(self_attn_layer_norm|encoder_attn_layer_norm|final_layer_norm)\.bias",
     "layers.{0}.{1}.bias", None),
    (r"layer_norm\.scale", "layer_norm.weight", None),
    (r"layer_norm\.bias", "layer_norm.bias", None),
]

# HF → NNX layout. Each is its own inverse's transpose, so export reuses them.
TO_NNX: dict[str | None, Callable[[np.ndarray], np.ndarray]] = {
    None: lambda w: w,
    "linear": lambda w: w.T,  # torch Linear [out, in] -> [in, out]
    "conv": lambda w: w.transpose(2, 1, 0),  # torch Conv1d [out, in, width] -> [width, in, out]
}
FROM_NNX = {None: lambda w: w, "linear": lambda w: w.T, "conv": lambda w: w.transpose(2, 1, 0)}


def hf_name(nnx_path: str, rules, prefix: str = "") -> tuple[str, str | None]:
    """The Hugging Face tensor name and transform for one NNX parameter path."""
    for pattern, template, transform in rules:
        m = re.fullmatch(pattern, nnx_path)
        if m:
            return prefix + template.format(*m.groups()), transform
    raise KeyError(f"no Hugging Face name for parameter {nnx_path!r}")


# ---------------------------------------------------------------------------
# Lazy safetensors reading (bf16 included, via ml_dtypes)
# ---------------------------------------------------------------------------
_DTYPES = {"F32": np.float32, "F16": np.float16, "BF16": ml_dtypes.bfloat16, "F64": np.float64,
           "I64": np.int64, "I32": np.int32, "I16": np.int16, "I8": np.int8, "U8": np.uint8, "BOOL": np.bool_}


class SafetensorsDir:
    """All tensors of a directory holding `model.safetensors` or a sharded index."""

    def __init__(self, directory: Path):
        self.directory = Path(directory)
        index = self.directory / "model.safetensors.index.json"
        single = self.directory / "model.safetensors"
        if index.exists():
            try:
                weight_map = json.loads(index.read_text())["weight_map"]
            except (json.JSONDecodeError, KeyError) as e:
                raise CheckpointError(f"{index}: not a valid safetensors index ({e})") from None
            files = sorted(set(weight_map.values()))
        elif single.exists():
            files, weight_map = ["model.safetensors"], None
        else:
            raise CheckpointError(f"{self.directory}: no model.safetensors or model.safetensors.index.json "
                                  "(PyTorch .bin checkpoints are not supported; re-save with safe_serialization=True)")
        self.entries: dict[str, tuple[Path, dict, int]] = {}
        for name in files:
            path = self.directory / name
            header, data_start = _read_header(path)
            for key, info in header.items():
                if key != "__metadata__":
                    self.entries[key] = (path, info, data_start)
        if weight_map is not None:
            missing = [k for k, f in weight_map.items() if k not in self.entries]
            if missing:
                raise CheckpointError(f"{index}: lists tensors not found in their files, e.g. {missing[0]!r}")

    def __contains__(self, name: str) -> bool:
        return name in self.entries

    def shape(self, name: str) -> tuple[int, ...]:
        return tuple(self.entries[name][1]["shape"])

    def file_of(self, name: str) -> Path:
        return self.entries[name][0]

    def get(self, name: str) -> np.ndarray:
        """A read-only memory-mapped view of one tensor."""
        path, info, data_start = self.entries[name]
        begin, end = info["data_offsets"]
        dtype = _DTYPES.get(info["dtype"])
        if dtype is None:
            raise CheckpointError(f"{path}: tensor {name!r} has unsupported dtype {info['dtype']}")
        mm = np.memmap(path, dtype=np.uint8, mode="r", offset=data_start + begin, shape=(end - begin,))
        return mm.view(dtype).reshape(info["shape"])


def _read_header(path: Path) -> tuple[dict, int]:
    """The JSON header and where tensor data starts; checks the file is long enough."""
    bad = f"{path}: not a readable safetensors file"
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            (n,) = struct.unpack("<Q", f.read(8))
            if 8 + n > size:
                raise CheckpointError(f"{bad} (header length {n} exceeds the file size {size})")
            header = json.loads(f.read(n))
    except FileNotFoundError:
        raise CheckpointError(f"{path}: file listed in the index does not exist") from None
    except (struct.error, json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{bad} ({e})") from None
    if not isinstance(header, dict):
        raise CheckpointError(f"{bad} (header is not a JSON object)")
    try:
        end = max((v["data_offsets"][1] for k, v in header.items() if k != "__metadata__"), default=0)
    except (TypeError, KeyError, IndexError):
        raise CheckpointError(f"{bad} (malformed tensor entries in the header)") from None
    if 8 + n + end > size:
        raise CheckpointError(f"{path}: truncated ({size} bytes, the header needs {8 + n + end}); "
                              "re-download or re-save it")
    return header, 8 + n


# ---------------------------------------------------------------------------
# from_pretrained
# ---------------------------------------------------------------------------
def read_config(directory: str | Path) -> dict:
    directory = Path(directory)
    if not directory.is_dir():
        raise CheckpointError(f"{directory}: model directory does not exist")
    path = directory / "config.json"
    if not path.exists():
        raise CheckpointError(f"{path}: missing (every Hugging Face model directory has a config.json)")
    try:
        config = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(config, dict):
        raise CheckpointError(f"{path}: top level must be a JSON object")
    return config


def _dtype(name) -> jnp.dtype:
    try:
        return jnp.dtype(name)
    except TypeError:
        raise CheckpointError(f"dtype {name!r} is not a valid dtype (use float32 or bfloat16)") from None


def model_kind(hf_config: dict, directory: Path) -> str:
    """"qwen2" for Qwen2 and Llama decoders (one model, `attention_bias` tells them apart), or "whisper"."""
    kind = hf_config.get("model_type")
    if kind in ("qwen2", "llama"):
        return "qwen2"
    if kind == "whisper":
        return kind
    raise CheckpointError(f"{directory / 'config.json'}: model_type {kind!r} is not supported "
                          "(supported: 'qwen2' for Qwen2/Qwen2.5, 'llama' for Llama-family LLMs such as SmolLM2 "
                          "and Llama-3.x, 'whisper' for the Whisper encoder or decoder)")


def from_pretrained(path: str | Path, dtype="float32", *, num_layers: int | None = None,
                    compute_dtype=None, place: Callable | None = None, weights: bool = True,
                    part: str | None = None) -> nnx.Module:
    """Build an NNX model from a local Hugging Face directory.

    `model_type` "qwen2" → `Qwen2ForCausalLM`; "whisper" (WhisperModel or
    WhisperForConditionalGeneration) → `WhisperEncoder`, optionally only its
    first `num_layers` layers (only those weights are read); with `part="decoder"`
    → `WhisperDecoder` instead (the cascade baseline's transcriber; loads whole).
    `place(nnx_path, logical_axes, array)` puts each loaded tensor on devices
    (default: `jnp.asarray`, the default device); sharded loading plugs in here.
    `weights=False` reads only config.json and returns the model with abstract
    (`jax.ShapeDtypeStruct`) values: ahead-of-time compilation needs no weight file.
    """
    directory = Path(path)
    hf_config = read_config(directory)
    kind = model_kind(hf_config, directory)
    param_dtype = _dtype(dtype)
    compute = _dtype(compute_dtype) if compute_dtype is not None else param_dtype
    decoder = _whisper_part(kind, part, num_layers) == "decoder"
    config_cls = Qwen2Config if kind == "qwen2" else WhisperDecoderConfig if decoder else WhisperEncoderConfig
    try:
        config = config_cls.from_hf(hf_config)
    except KeyError as e:
        raise CheckpointError(f"{directory / 'config.json'}: missing field {e}") from None
    except ValueError as e:
        raise CheckpointError(f"{directory / 'config.json'}: {e}") from None
    if kind == "qwen2":
        build = lambda: Qwen2ForCausalLM(config, rngs=nnx.Rngs(0), param_dtype=param_dtype, dtype=compute)
        rules, prefix = QWEN2_RULES, ""
    elif decoder:
        build = lambda: WhisperDecoder(config, rngs=nnx.Rngs(0), param_dtype=param_dtype, dtype=compute)
        rules, prefix = WHISPER_DECODER_RULES, None
    else:
        build = lambda: WhisperEncoder(config, num_layers=num_layers, rngs=nnx.Rngs(0),
                                       param_dtype=param_dtype, dtype=compute)
        rules, prefix = WHISPER_ENCODER_RULES, None
    try:
        abstract = nnx.eval_shape(build)  # no random init of billions of weights
    except ValueError as e:
        raise CheckpointError(f"{directory}: {e}") from None
    if not weights:
        return abstract
    tensors = SafetensorsDir(directory)
    if kind == "qwen2" and not config.attention_bias:
        biased = next((n for n in tensors.entries if re.search(r"self_attn\.[qkv]_proj\.bias$", n)), None)
        if biased:  # import walks our parameters only: a bias would be dropped without a word
            raise CheckpointError(f"{directory / 'config.json'}: says no attention biases (model_type "
                                  f"{config.model_type!r}, attention_bias false) but the checkpoint holds {biased!r}; "
                                  f"fix model_type or set attention_bias to true")
    if prefix is None:
        prefix = _whisper_prefix(tensors, directory, "decoder" if decoder else "encoder")
    load_into(abstract, tensors, rules, prefix, place)
    return abstract


def _whisper_part(kind: str, part: str | None, num_layers: int | None) -> str | None:
    """The Whisper part to build ("encoder" by default); None for qwen2, which has no parts."""
    if kind != "whisper":
        if part is not None:
            raise ValueError(f"part={part!r} applies to Whisper checkpoints only (this one is {kind})")
        return None
    part = part or "encoder"
    if part not in ("encoder", "decoder"):
        raise ValueError(f"part={part!r}: a Whisper checkpoint loads as 'encoder' or 'decoder'")
    if part == "decoder" and num_layers is not None:
        raise ValueError("num_layers truncates the Whisper encoder only; the decoder always loads whole")
    return part


# The tensor that tells which layout (WhisperForConditionalGeneration "model.", WhisperModel bare) a part uses.
_WHISPER_PROBE = {"encoder": "conv1.weight", "decoder": "embed_tokens.weight"}


def _whisper_prefix(tensors: SafetensorsDir, directory: Path, part: str = "encoder") -> str:
    probe = _WHISPER_PROBE[part]
    for prefix in (f"model.{part}.", f"{part}."):
        if prefix + probe in tensors:
            return prefix
    raise CheckpointError(f"{directory}: no Whisper {part} tensors found "
                          f"(expected 'model.{part}.{probe}' or '{part}.{probe}')")


def nnx_path(path: tuple) -> str:
    return ".".join(str(p) for p in path)


def load_into(model: nnx.Module, tensors: SafetensorsDir, rules, prefix: str = "",
              place: Callable | None = None) -> None:
    """Fill every parameter of `model` (abstract or concrete) from `tensors`, checking shapes."""
    place = place or (lambda _path, _axes, array: jnp.asarray(array))
    for path, var in nnx.iter_graph(model):
        if not isinstance(var, nnx.Variable):
            continue
        dotted = nnx_path(path)
        name, transform = hf_name(dotted, rules, prefix)
        if name not in tensors:
            raise CheckpointError(f"{tensors.directory}: tensor {name!r} is missing from the checkpoint "
                                  f"(needed for parameter {dotted})")
        array = TO_NNX[transform](tensors.get(name))
        if tuple(array.shape) != tuple(var.shape):
            raise CheckpointError(f"{tensors.file_of(name)}: tensor {name!r} has shape {tuple(tensors.shape(name))}, "
                                  f"config.json implies {tuple(FROM_NNX[transform](np.empty(var.shape)).shape)}")
        array = np.asarray(array, dtype=var.dtype)
        var.set_value(place(dotted, var.get_metadata().get("logical_axes"), array))
