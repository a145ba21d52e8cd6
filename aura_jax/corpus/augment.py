"""Augmentation of synthesized training speech toward recorded speech: speed, level, noise and a
telephone band. Synthetic voices are clean, level-normalized and fixed in tempo; recorded speech is
none of these. Each transform is drawn per clip from a seed, so a corpus is a function of its seed
(and the frozen teacher's targets for a clip never change)."""

from __future__ import annotations

import dataclasses

import numpy as np

SAMPLING_RATE = 16000


@dataclasses.dataclass(frozen=True)
class Augment:
    """Probabilities and ranges; `Augment.none()` leaves every clip as it is."""

    speed_p: float = 0.5
    speed: tuple[float, float] = (0.9, 1.1)  # tempo factor (resampling: pitch moves with it, as in Kaldi)
    gain_db: tuple[float, float] = (-12.0, 3.0)  # every clip: a level drawn here (peaks clipped to ±1)
    noise_p: float = 0.3
    snr_db: tuple[float, float] = (15.0, 35.0)  # white noise at this signal-to-noise ratio
    band_p: float = 0.2  # 300-3400 Hz: telephone speech

    @staticmethod
    def none() -> "Augment":
        return Augment(speed_p=0.0, gain_db=(0.0, 0.0), noise_p=0.0, band_p=0.0)


def change_speed(wave: np.ndarray, factor: float) -> np.ndarray:
    """`wave` played `factor` times faster (shorter for factor > 1), by resampling with soxr."""
    import soxr

    return soxr.resample(wave, SAMPLING_RATE * factor, SAMPLING_RATE).astype(np.float32)


def add_noise(wave: np.ndarray, snr_db: float, rng) -> np.ndarray:
    power = float(np.mean(wave.astype(np.float64) ** 2)) or 1e-10
    noise = rng.standard_normal(len(wave)) * np.sqrt(power / 10 ** (snr_db / 10))
    return (wave + noise).astype(np.float32)


def band_limit(wave: np.ndarray, low: float = 300.0, high: float = 3400.0) -> np.ndarray:
    from scipy.signal import butter, sosfiltfilt

    sos = butter(4, [low, high], btype="bandpass", fs=SAMPLING_RATE, output="sos")
    return sosfiltfilt(sos, wave).astype(np.float32)


def augment(wave: np.ndarray, spec: Augment, rng) -> tuple[np.ndarray, dict]:
    """(augmented wave, what was done), drawing from `rng` in a fixed order."""
    done: dict = {}
    draws = rng.random(3)
    if draws[0] < spec.speed_p:
        done["speed"] = float(rng.uniform(*spec.speed))
        wave = change_speed(wave, done["speed"])
    if draws[1] < spec.band_p:
        done["band"] = True
        wave = band_limit(wave)
    if draws[2] < spec.noise_p:
        done["snr_db"] = float(rng.uniform(*spec.snr_db))
        wave = add_noise(wave, done["snr_db"], rng)
    if spec.gain_db != (0.0, 0.0):
        done["gain_db"] = float(rng.uniform(*spec.gain_db))
        wave = wave * 10 ** (done["gain_db"] / 20)
    return np.clip(wave, -1.0, 1.0).astype(np.float32), done
