"""CTranslate2 Whisper models → a plain Hugging Face Whisper directory.

Our own reader of CTranslate2's `model.bin` (there is no public reader outside ctranslate2's C++
runtime). After conversion a CTranslate2 checkpoint is an ordinary
`WhisperForConditionalGeneration` directory, and from there on it loads like any other
(`aura_jax.hf`, transformers).

`model.bin` (little-endian, as ctranslate2's `specs/model_spec.py` writes it): uint32 format
version, string spec name, uint32 spec revision, uint32 variable count; per variable a string
name, uint8 rank, rank × uint32 dims, uint8 dtype code, uint32 byte count and the raw bytes; then
uint32 alias count and (alias, target) string pairs. A string is a uint16 length that counts its
trailing NUL, the bytes, the NUL.

Names map onto Hugging Face's by a table plus two transforms: the fused q|k|v (self-attention)
and k|v (cross-attention) projections are split along rows, and the fused k bias, which is zero
(Hugging Face's k_proj has none), is dropped. Weights are [out, in] as in torch: no transpose,
no query scaling. CTranslate2's float16 sinusoids are kept as they are (recomputing exact ones
moves the encoder output by 5e-3 against the runtime's own).
"""

from __future__ import annotations

import json
import re
import shutil
import struct
from pathlib import Path

import numpy as np

DTYPES = {0: np.float32, 1: np.int8, 2: np.int16, 3: np.int32, 4: np.float16}  # 5 is bfloat16 (below)
SUPPORTED_VERSIONS = (5, 6)


class Ct2FormatError(ValueError):
    """A CTranslate2 model that cannot be read or converted; the message names the file."""


def _bf16():
    import ml_dtypes

    return ml_dtypes.bfloat16


class _Reader:
    def __init__(self, path: Path):
        self.path, self.data, self.pos = path, path.read_bytes(), 0

    def take(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise Ct2FormatError(f"{self.path}: truncated at byte {self.pos} (needs {n} more, file has "
                                 f"{len(self.data)}); re-download the model")
        out = self.data[self.pos:self.pos + n]
        self.pos += n
        return out

    def uint(self, fmt: str) -> int:
        return struct.unpack("<" + fmt, self.take(struct.calcsize(fmt)))[0]

    def string(self) -> str:
        n = self.uint("H")
        raw = self.take(n)
        if not raw or raw[-1] != 0:
            raise Ct2FormatError(f"{self.path}: malformed string at byte {self.pos - n}")
        return raw[:-1].decode("utf-8")


def read_model_bin(path: str | Path) -> tuple[str, dict[str, np.ndarray], dict[str, str]]:
    """(spec name, {variable: array}, {alias: target}) of a CTranslate2 `model.bin`."""
    path = Path(path)
    if not path.is_file():
        raise Ct2FormatError(f"{path}: missing (a CTranslate2 model directory holds model.bin)")
    r = _Reader(path)
    version = r.uint("I")
    if version not in SUPPORTED_VERSIONS:
        raise Ct2FormatError(f"{path}: CTranslate2 format version {version} is not supported "
                             f"(supported: {', '.join(map(str, SUPPORTED_VERSIONS))})")
    spec = r.string()
    r.uint("I")  # spec revision
    variables = {}
    for _ in range(r.uint("I")):
        name = r.string()
        shape = tuple(r.uint("I") for _ in range(r.uint("B")))
        code = r.uint("B")
        dtype = _bf16() if code == 5 else DTYPES.get(code)
        if dtype is None:
            raise Ct2FormatError(f"{path}: variable {name!r} has unknown dtype code {code}")
        nbytes = r.uint("I")
        raw = r.take(nbytes)
        count = int(np.prod(shape)) if shape else 1
        if count * np.dtype(dtype).itemsize != nbytes:
            raise Ct2FormatError(f"{path}: variable {name!r} of shape {shape} holds {nbytes} bytes")
        variables[name] = np.frombuffer(raw, dtype=dtype).reshape(shape)
    aliases = {}
    if r.pos < len(r.data):
        for _ in range(r.uint("I")):
            alias = r.string()
            aliases[alias] = r.string()
    return spec, variables, aliases


# CTranslate2 name (regex) → Hugging Face name (template) for WhisperSpec; fused projections below.
_NAMES = [
    (r"encoder/conv([12])/(weight|bias)", "model.encoder.conv{0}.{1}"),
    (r"encoder/position_encodings/encodings", "model.encoder.embed_positions.weight"),
    (r"decoder/position_encodings/encodings", "model.decoder.embed_positions.weight"),
    (r"decoder/embeddings/weight", "model.decoder.embed_tokens.weight"),
    (r"(encoder|decoder)/layer_norm/(gamma|beta)", "model.{0}.layer_norm.{1}"),
    (r"(encoder|decoder)/layer_(\d+)/self_attention/layer_norm/(gamma|beta)",
     "model.{0}.layers.{1}.self_attn_layer_norm.{2}"),
    (r"(encoder|decoder)/layer_(\d+)/self_attention/linear_1/(weight|bias)", "model.{0}.layers.{1}.self_attn.out_proj.{2}"),
    (r"decoder/layer_(\d+)/attention/layer_norm/(gamma|beta)", "model.decoder.layers.{0}.encoder_attn_layer_norm.{1}"),
    (r"decoder/layer_(\d+)/attention/linear_0/(weight|bias)", "model.decoder.layers.{0}.encoder_attn.q_proj.{1}"),
    (r"decoder/layer_(\d+)/attention/linear_2/(weight|bias)", "model.decoder.layers.{0}.encoder_attn.out_proj.{1}"),
    (r"(encoder|decoder)/layer_(\d+)/ffn/layer_norm/(gamma|beta)", "model.{0}.layers.{1}.final_layer_norm.{2}"),
    (r"(encoder|decoder)/layer_(\d+)/ffn/linear_0/(weight|bias)", "model.{0}.layers.{1}.fc1.{2}"),
    (r"(encoder|decoder)/layer_(\d+)/ffn/linear_1/(weight|bias)", "model.{0}.layers.{1}.fc2.{2}"),
]
_FUSED = [  # (regex, prefix template, projections in row order)
    (r"(encoder|decoder)/layer_(\d+)/self_attention/linear_0/(weight|bias)", "model.{0}.layers.{1}.self_attn",
     ("q_proj", "k_proj", "v_proj")),
    (r"decoder/layer_(\d+)/attention/linear_1/(weight|bias)", "model.decoder.layers.{0}.encoder_attn",
     ("k_proj", "v_proj")),
]


def _hf_leaf(name: str) -> str:
    return {"gamma": "weight", "beta": "bias"}.get(name, name)


def whisper_state_dict(variables: dict[str, np.ndarray], path: Path) -> dict[str, np.ndarray]:
    """Hugging Face `WhisperForConditionalGeneration` tensors (float32) from WhisperSpec variables."""
    out = {}
    for name, value in variables.items():
        if value.ndim == 0 or name.endswith("/scale"):  # rank-0 scalars only restate the config
            continue
        value = np.asarray(value, np.float32)
        for pattern, template in _NAMES:
            if m := re.fullmatch(pattern, name):
                groups = [_hf_leaf(g) for g in m.groups()]
                out[template.format(*groups)] = value
                break
        else:
            for pattern, prefix, projections in _FUSED:
                if m := re.fullmatch(pattern, name):
                    *where, leaf = m.groups()
                    parts = np.split(value, len(projections), axis=0)
                    for proj, part in zip(projections, parts):
                        if proj == "k_proj" and leaf == "bias":
                            if np.any(part != 0):
                                raise Ct2FormatError(f"{path}: {name}: the k part of the fused bias is not zero "
                                                     f"(Hugging Face's Whisper k_proj has no bias)")
                            continue
                        out[f"{prefix.format(*where)}.{proj}.{leaf}"] = part
                    break
            else:
                raise Ct2FormatError(f"{path}: variable {name!r} has no Hugging Face name (a WhisperSpec model "
                                     f"was expected)")
    return out


def whisper_config(variables: dict[str, np.ndarray], config: dict, path: Path) -> dict:
    """Hugging Face WhisperConfig fields, read off the tensors' shapes and the scalar settings."""
    def count(part):
        return len({int(m.group(1)) for n in variables if (m := re.match(rf"{part}/layer_(\d+)/", n))})

    def scalar(name, default=None):
        v = variables.get(name)
        return default if v is None else v.item()

    d_model = variables["encoder/conv1/weight"].shape[0]
    heads = int(scalar("encoder/num_heads", config.get("num_heads", 0)) or 0)
    if not heads:
        raise Ct2FormatError(f"{path}: no encoder/num_heads in model.bin")
    vocab = variables["decoder/embeddings/weight"].shape[0]
    return {
        "model_type": "whisper", "architectures": ["WhisperForConditionalGeneration"],
        "vocab_size": int(vocab), "num_mel_bins": int(variables["encoder/conv1/weight"].shape[1]),
        "d_model": int(d_model), "encoder_layers": count("encoder"), "decoder_layers": count("decoder"),
        "encoder_attention_heads": heads, "decoder_attention_heads": int(scalar("decoder/num_heads", heads)),
        "encoder_ffn_dim": int(variables["encoder/layer_0/ffn/linear_0/weight"].shape[0]),
        "decoder_ffn_dim": int(variables["decoder/layer_0/ffn/linear_0/weight"].shape[0]),
        "max_source_positions": int(variables["encoder/position_encodings/encodings"].shape[0]),
        "max_target_positions": int(variables["decoder/position_encodings/encodings"].shape[0]),
        "activation_function": "gelu", "scale_embedding": False, "tie_word_embeddings": True,
    }


# Settings a Hugging Face Whisper cannot express: refuse them rather than convert something else.
_EXPECTED_SCALARS = {"activation": 3, "pre_norm": 1, "scale_embeddings": 0, "alibi": 0}  # 3: GELU


def _check_spec(spec: str, variables: dict, path: Path) -> None:
    if spec != "WhisperSpec":
        raise Ct2FormatError(f"{path}: a {spec} model; only Whisper (WhisperSpec) converts to Hugging Face here")
    if any(v.dtype == np.int8 for k, v in variables.items() if v.ndim):
        raise Ct2FormatError(f"{path}: int8-quantized weights; convert a float16 or float32 CTranslate2 model "
                             f"(quantization is lossy, and the parity checks expect the original weights)")
    for part in ("encoder", "decoder"):
        for key, want in _EXPECTED_SCALARS.items():
            got = variables.get(f"{part}/{key}")
            if got is not None and got.item() != want:
                raise Ct2FormatError(f"{path}: {part}/{key}={got.item()} (Hugging Face Whisper needs {want})")


def _token_ids(vocabulary: list[str]) -> dict[str, int]:
    return {tok: i for i, tok in enumerate(vocabulary)}


def generation_config(vocabulary: list[str], config: dict, hf: dict) -> dict:
    """generation_config.json fields; an English-only model (vocabulary < 51865, as Whisper decides)
    gets no language or task tokens."""
    ids = _token_ids(vocabulary)
    eos = ids["<|endoftext|>"]
    out = {"decoder_start_token_id": ids["<|startoftranscript|>"], "eos_token_id": eos, "pad_token_id": eos,
           "bos_token_id": eos, "max_length": hf["max_target_positions"],
           "no_timestamps_token_id": ids["<|notimestamps|>"], "return_timestamps": False,
           "suppress_tokens": list(config.get("suppress_ids", [])),
           "begin_suppress_tokens": list(config.get("suppress_ids_begin", [])),
           "is_multilingual": hf["vocab_size"] >= 51865,
           "alignment_heads": [list(h) for h in config.get("alignment_heads", [])]}
    if out["is_multilingual"]:
        out["lang_to_id"] = {vocabulary[i]: i for i in config.get("lang_ids", [])}
        out["task_to_id"] = {"transcribe": ids["<|transcribe|>"], "translate": ids["<|translate|>"]}
    return out


def convert_whisper(ct2_dir: str | Path, out_dir: str | Path) -> Path:
    """Write a Hugging Face Whisper directory (float32 safetensors, config, feature extractor with the
    model's mel bins, tokenizer, generation config) from a CTranslate2 Whisper directory."""
    import torch
    from transformers import WhisperConfig, WhisperFeatureExtractor, WhisperForConditionalGeneration

    src, out = Path(ct2_dir), Path(out_dir)
    model_bin = src / "model.bin"
    spec, variables, _aliases = read_model_bin(model_bin)
    _check_spec(spec, variables, model_bin)
    config = _read_json(src / "config.json")
    vocab_file, vocabulary = read_vocabulary(src)
    hf = whisper_config(variables, config, model_bin)
    if len(vocabulary) != hf["vocab_size"]:
        raise Ct2FormatError(f"{vocab_file}: {len(vocabulary)} tokens, the embedding has {hf['vocab_size']} rows")
    tokenizer_json = src / "tokenizer.json"
    if not tokenizer_json.is_file():
        raise Ct2FormatError(f"{tokenizer_json}: missing; the Hugging Face tokenizer is built from it (faster-whisper "
                             f"models ship it; else convert with ct2-transformers-converter --copy_files tokenizer.json)")
    state = whisper_state_dict(variables, model_bin)
    gen = generation_config(vocabulary, config, hf)
    hf_config = WhisperConfig(**{k: v for k, v in hf.items() if k not in ("model_type", "architectures")},
                              decoder_start_token_id=gen["decoder_start_token_id"], eos_token_id=gen["eos_token_id"],
                              pad_token_id=gen["pad_token_id"], bos_token_id=gen["bos_token_id"],
                              suppress_tokens=gen["suppress_tokens"], begin_suppress_tokens=gen["begin_suppress_tokens"])
    model = WhisperForConditionalGeneration(hf_config).eval()
    tensors = {k: torch.from_numpy(np.array(v)) for k, v in state.items()}  # writable copies
    tensors["proj_out.weight"] = tensors["model.decoder.embed_tokens.weight"]
    missing, unexpected = model.load_state_dict(tensors, strict=False)
    if missing or unexpected:
        raise Ct2FormatError(f"{model_bin}: does not fill a Hugging Face Whisper of its shapes "
                             f"(missing {missing[:3]}, unexpected {unexpected[:3]})")
    tmp = out.with_name(out.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for key, value in gen.items():
        setattr(model.generation_config, key, value)
    model.save_pretrained(tmp, safe_serialization=True)
    WhisperFeatureExtractor(feature_size=hf["num_mel_bins"]).save_pretrained(tmp)
    shutil.copyfile(tokenizer_json, tmp / "tokenizer.json")
    special = "<|endoftext|>"
    (tmp / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "WhisperTokenizer", "bos_token": special, "eos_token": special, "unk_token": special,
        "pad_token": special, "model_max_length": 1024, "errors": "replace", "add_prefix_space": False}, indent=2))
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    return out


def read_vocabulary(directory: Path) -> tuple[Path, list[str]]:
    """The tokens by id: vocabulary.json (a JSON list, newer converters) or vocabulary.txt (one a line)."""
    as_json, as_text = directory / "vocabulary.json", directory / "vocabulary.txt"
    if as_json.is_file():
        tokens = _read_json(as_json)
        if not isinstance(tokens, list):
            raise Ct2FormatError(f"{as_json}: not a JSON list of tokens")
        return as_json, tokens
    if as_text.is_file():
        return as_text, as_text.read_text(encoding="utf-8").splitlines()
    raise Ct2FormatError(f"{directory}: no vocabulary.json or vocabulary.txt (a CTranslate2 Whisper holds its vocabulary)")


def _read_json(path: Path):
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise Ct2FormatError(f"{path}: missing (a CTranslate2 model directory holds config.json)") from None
    except json.JSONDecodeError as e:
        raise Ct2FormatError(f"{path}: not valid JSON ({e})") from None
