"""Numerical parity between our NNX models and the transformers PyTorch models.

`check_parity(dir)` loads a Hugging Face Qwen2, Llama or Whisper directory both
ways, feeds the same random input and reports the max abs difference per layer
(hidden states, logits) and its scaled form, which the tolerance is held to: the
difference over max(1, the layer's largest |value|). A real LLM's hidden states
hold "massive activations" (SmolLM2: |h| up to 2e4 from layer 12 on), where a
float32 rounding difference of 0.2 is 1e-5 of the scale; small values are held to
the absolute difference. Users run it (`aura-jax check-parity --hf DIR`)
to trust a conversion before a long job. Needs the `convert` extra.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from aura_jax.hf import from_pretrained, model_kind, read_config


@dataclass
class ParityReport:
    kind: str
    per_layer: list[tuple[str, float, float]]  # (name, max abs diff, largest |reference value|)

    @property
    def max_abs_diff(self) -> float:
        return max(d for _, d, _ in self.per_layer)

    @property
    def max_scaled_diff(self) -> float:
        return max(scaled(d, s) for _, d, s in self.per_layer)


def scaled(diff: float, scale: float) -> float:
    return diff / max(1.0, scale)


def check_parity(directory: str | Path, *, seed: int = 0, batch: int = 2, seq_len: int = 16) -> ParityReport:
    directory = Path(directory)
    kind = model_kind(read_config(directory), directory)
    rng = np.random.default_rng(seed)
    if kind == "qwen2":
        return _qwen2(directory, rng, batch, seq_len)
    return _whisper(directory, rng)


def _row(name: str, ours, reference) -> tuple[str, float, float]:
    a, b = np.asarray(ours, np.float64), np.asarray(reference, np.float64)
    return name, float(np.max(np.abs(a - b))), float(np.max(np.abs(b)))


def _qwen2(directory: Path, rng, batch: int, seq_len: int) -> ParityReport:
    import jax.numpy as jnp
    import torch
    from transformers import AutoModelForCausalLM

    ours = from_pretrained(directory, "float32")
    theirs = AutoModelForCausalLM.from_pretrained(str(directory), dtype=torch.float32).eval()
    ids = rng.integers(0, ours.config.vocab_size, (batch, seq_len))
    out = ours(jnp.asarray(ids), output_hidden_states=True)
    with torch.no_grad():
        ref = theirs(torch.as_tensor(ids), output_hidden_states=True)
    rows = [_row(_name(i, len(out.hidden_states)), a, b.numpy())
            for i, (a, b) in enumerate(zip(out.hidden_states, ref.hidden_states))]
    rows.append(_row("logits", out.logits, ref.logits.numpy()))
    return ParityReport(ours.config.model_type, rows)


def _whisper(directory: Path, rng) -> ParityReport:
    import jax.numpy as jnp
    import torch
    from transformers import WhisperModel

    ours = from_pretrained(directory, "float32")
    theirs = WhisperModel.from_pretrained(str(directory), dtype=torch.float32).encoder.eval()
    features = rng.standard_normal((1, ours.config.num_mel_bins, ours.config.num_input_frames)).astype(np.float32)
    out = ours(jnp.asarray(features), output_hidden_states=True)
    with torch.no_grad():
        ref = theirs(torch.as_tensor(features), output_hidden_states=True)
    rows = [_row(_name(i, len(out.hidden_states)), a, b.numpy())
            for i, (a, b) in enumerate(zip(out.hidden_states, ref.hidden_states))]
    return ParityReport("whisper", rows)


def _name(i: int, count: int) -> str:
    if i == 0:
        return "embeddings"
    return f"layer {i}" + (" (+final norm)" if i == count - 1 else "")
