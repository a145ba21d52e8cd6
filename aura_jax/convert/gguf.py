"""GGUF checkpoints (llama.cpp's format) → a plain Hugging Face directory, through transformers'
own GGUF loader (the `gguf` package dequantizes every tensor; `from_pretrained(dir, gguf_file=...)`).

transformers refuses to `save_pretrained` a GGUF-loaded model ("quantized with gguf and is not
serializable"), so the dequantized weights go into a plain model built from the same config
without its quantization record, and that is saved: float32 safetensors, the tokenizer with its
chat template, and the generation config. Its logits equal the GGUF-loaded model's exactly."""

from __future__ import annotations

import shutil
from pathlib import Path


class GgufError(ValueError):
    """A GGUF file that cannot be converted; the message names the file."""


def convert_gguf(gguf_file: str | Path, out_dir: str | Path, dtype: str = "float32") -> Path:
    """Write a Hugging Face causal-LM directory from one GGUF file."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path, out = Path(gguf_file), Path(out_dir)
    if not path.is_file():
        raise GgufError(f"{path}: missing")
    with open(path, "rb") as f:
        if f.read(4) != b"GGUF":
            raise GgufError(f"{path}: not a GGUF file (no GGUF magic)")
    try:
        import gguf  # noqa: F401  (transformers' loader needs it)
    except ImportError:
        raise GgufError("reading GGUF needs the `gguf` package: pip install gguf") from None
    torch_dtype = getattr(torch, dtype)
    loaded = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=torch_dtype)
    tokenizer = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
    if not getattr(tokenizer, "chat_template", None):
        raise GgufError(f"{path}: holds no chat template (tokenizer.chat_template); an instruct model is needed")
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    plain = AutoModelForCausalLM.from_config(config, dtype=torch_dtype)
    missing, unexpected = plain.load_state_dict(loaded.state_dict(), strict=False)
    missing = [k for k in missing if not (k == "lm_head.weight" and config.tie_word_embeddings)]
    if missing or unexpected:
        raise GgufError(f"{path}: the dequantized weights do not fill a {config.model_type} model "
                        f"(missing {missing[:3]}, unexpected {unexpected[:3]})")
    plain.generation_config = loaded.generation_config
    tmp = out.with_name(out.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    plain.save_pretrained(tmp, safe_serialization=True)
    tokenizer.save_pretrained(tmp)
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    return out
