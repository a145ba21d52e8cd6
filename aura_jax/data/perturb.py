"""Speaker perturbation of training clips (config `perturb`, issue 42): VTLP, pitch shift, SpecAugment.

Every draw comes from a generator seeded by (run seed, step, global row), never from a shared
stream: a resumed run (or random access to step s) draws what the uninterrupted run drew, and every
process draws the same for the same row. The perturbed clip is featurized once and both the student's
window and the teacher's are cut from those features, so the teacher hears exactly what the student
hears (the distillation target follows the perturbation).

  VTLP           a per-clip warp α ~ U[1 - vtlp, 1 + vtlp] of the mel filter bank's frequency axis
                 (Jaitly & Hinton 2013; `audio.vtlp_filters`), quantized to steps of 0.005 so the
                 warped banks are computed once each
  pitch shift    librosa.effects.pitch_shift by U[-s, s] semitones (soxr resampling), same duration
  SpecAugment    frequency bands and time spans set to the clip's mean feature (Park et al. 2019), the
                 time masks within the clip's heard frames (never in its padding)
"""

from __future__ import annotations

import numpy as np

from aura_jax.audio import SAMPLING_RATE, vtlp_filters
from aura_jax.config import PerturbConfig

ALPHA_STEP = 0.005


def rng_for(seed: int, step: int, row: int) -> np.random.Generator:
    return np.random.default_rng([int(seed), int(step), int(row), 42])


def draw(cfg: PerturbConfig, rng: np.random.Generator) -> dict:
    """The clip's perturbation parameters (a draw is made for every knob, used or not, so turning one
    knob on does not change another's draws)."""
    alpha = 1.0 + cfg.vtlp * rng.uniform(-1.0, 1.0)
    semitones = cfg.pitch_semitones * rng.uniform(-1.0, 1.0)
    spec_seed = int(rng.integers(2**31))
    return {"alpha": round(round(alpha / ALPHA_STEP) * ALPHA_STEP, 6) if cfg.vtlp else 1.0,
            "semitones": float(semitones) if cfg.pitch_semitones else 0.0, "spec_seed": spec_seed}


def shift_pitch(wave: np.ndarray, semitones: float) -> np.ndarray:
    if semitones == 0.0:
        return wave
    import librosa

    return librosa.effects.pitch_shift(np.asarray(wave, np.float32), sr=SAMPLING_RATE, n_steps=semitones,
                                       res_type="soxr_hq").astype(np.float32)


def filters(n_mels: int, alpha: float) -> np.ndarray | None:
    """The mel bank for this clip (None: the plain one)."""
    return None if alpha == 1.0 else vtlp_filters(n_mels, alpha)


def spec_augment(features: np.ndarray, valid: np.ndarray, cfg: PerturbConfig, seed: int) -> np.ndarray:
    """Masks on features [S, n_mels, frames] (a copy): the same frequency bands in every segment, time spans
    inside each segment's `valid` heard frames; masked values are the heard features' mean."""
    out = np.array(features, copy=True)
    rng = np.random.default_rng(seed)
    heard = [out[s, :, :max(int(v), 1)] for s, v in enumerate(valid)]
    mean = float(np.mean(np.concatenate([h.reshape(-1) for h in heard])))
    n_mels = out.shape[1]
    for _ in range(cfg.freq_masks if cfg.freq_width else 0):
        width = int(rng.integers(0, cfg.freq_width + 1))
        start = int(rng.integers(0, n_mels - width + 1))
        out[:, start:start + width, :] = mean
    for s, v in enumerate(valid):
        for _ in range(cfg.time_masks if cfg.time_width else 0):
            width = min(int(rng.integers(0, cfg.time_width + 1)), int(v))
            start = int(rng.integers(0, int(v) - width + 1))
            out[s, :, start:start + width] = mean
    return out
