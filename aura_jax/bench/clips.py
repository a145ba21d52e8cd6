"""The spoken questions the inference benchmarks time: synthesized, so no dataset is needed."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from aura_jax.synth import synthesize

DEFAULT_QUESTION = "Give a simple one sentence answer."
QUESTIONS = ("what is the capital of france", "how many legs does a spider have", "who wrote the odyssey",
             "what is two plus three", "which planet is closest to the sun")


def synth_clips(directory: Path, n: int) -> list[str]:
    """n short spoken questions (espeak-ng when installed, else a generated signal) as wav files."""
    import soundfile as sf

    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        path = directory / f"q{i:03d}.wav"
        if not path.exists():
            sf.write(path, synthesize(QUESTIONS[i % len(QUESTIONS)], seed=i), 16000)
        paths.append(str(path))
    return paths


def speech_clip(seconds: float, seed: int = 0) -> np.ndarray:
    """`seconds` of speech: synthesized questions back to back (0.2 s apart), cut to length."""
    pieces, total, i = [], 0, seed
    while total < seconds * 16000:
        wave = synthesize(QUESTIONS[i % len(QUESTIONS)], seed=i)
        pieces += [wave, np.zeros(3200, np.float32)]
        total += len(wave) + 3200
        i += 1
    return np.concatenate(pieces)[:int(seconds * 16000)].astype(np.float32)
