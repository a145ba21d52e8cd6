"""Speech for tests and demos without downloads: espeak-ng, or a synthetic fallback."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import zlib

import numpy as np
import soundfile as sf

from aura_jax.audio import SAMPLING_RATE, to_mono_16k

# Rough espeak-ng duration at ~160 wpm, used to size the fallback signal.
SECONDS_PER_CHAR = 0.07


def espeak_available() -> bool:
    """True if the `espeak-ng` executable is on PATH."""
    return shutil.which("espeak-ng") is not None


def speak(
    text: str, voice: str = "en-us", speed: int = 160, pitch: int = 50, sampling_rate: int = SAMPLING_RATE
) -> np.ndarray:
    """Synthesize `text` with espeak-ng; float32 mono at `sampling_rate`.

    Raises RuntimeError (naming the voice) if espeak-ng is missing or fails.
    """
    exe = shutil.which("espeak-ng")
    if exe is None:
        raise RuntimeError(f"espeak-ng is not installed (needed for voice {voice!r}); apt-get install espeak-ng")
    with tempfile.TemporaryDirectory(prefix="aura_espeak_") as tmp:
        wav_path = os.path.join(tmp, "speech.wav")
        # Write to a file, not --stdout: the streamed WAV header carries a bogus
        # length. Text goes through stdin so a leading "-" is not read as a flag.
        cmd = [exe, "-v", voice, "-s", str(int(speed)), "-p", str(int(pitch)), "-b", "1", "-w", wav_path, "--stdin"]
        try:
            proc = subprocess.run(cmd, input=text.encode("utf-8"), capture_output=True, timeout=60)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise RuntimeError(f"espeak-ng failed for voice {voice!r}: {exc}") from None
        stderr = proc.stderr.decode("utf-8", "replace").strip()
        if proc.returncode != 0 or not os.path.exists(wav_path):
            raise RuntimeError(f"espeak-ng failed for voice {voice!r} (exit {proc.returncode}): {stderr}")
        try:
            data, sr = sf.read(wav_path, dtype="float32", always_2d=True)
        except Exception as exc:
            raise RuntimeError(f"espeak-ng output for voice {voice!r} is unreadable: {exc}") from None
    if data.shape[0] == 0:
        raise RuntimeError(f"espeak-ng produced no audio for voice {voice!r} and text {text!r}")
    return to_mono_16k(data, sr, target_rate=sampling_rate)


def synthetic_signal(seconds: float, sampling_rate: int = SAMPLING_RATE, seed: int = 0) -> np.ndarray:
    """A deterministic speech-like signal: harmonic "voice" with syllable-rate bursts and noise.

    Float32 mono in [-1, 1], never silent (for any positive duration).
    """
    rng = np.random.default_rng(seed)
    n = max(1, int(round(seconds * sampling_rate)))
    t = np.arange(n) / sampling_rate
    # Pitch 100-220 Hz with a slow vibrato-like drift, like a talker's f0 contour.
    f0 = rng.uniform(100.0, 220.0) * (1.0 + 0.08 * np.sin(2 * np.pi * rng.uniform(0.3, 1.0) * t))
    phase = 2 * np.pi * np.cumsum(f0) / sampling_rate
    # A few harmonics with decaying amplitude give a voiced, formant-free timbre.
    amps = rng.uniform(0.3, 1.0, size=6) / np.arange(1, 7)
    voiced = sum(a * np.sin((k + 1) * phase) for k, a in enumerate(amps))
    # Syllables at ~4 Hz: a rectified sine envelope with a random rate and offset.
    rate = rng.uniform(3.0, 5.0)
    envelope = np.maximum(np.sin(2 * np.pi * rate * t + rng.uniform(0, 2 * np.pi)), 0.0) ** 0.5
    noise = 0.05 * rng.standard_normal(n)
    x = envelope * voiced + noise
    # Normalize to a comfortable peak so the result is always inside [-1, 1].
    x = 0.8 * x / max(float(np.abs(x).max()), 1e-8)
    return x.astype(np.float32)


def synthesize(text: str, voice: str = "en-us", seed: int = 0, sampling_rate: int = SAMPLING_RATE) -> np.ndarray:
    """Speech for `text`: espeak-ng if installed, else a deterministic synthetic signal.

    The fallback lasts ~SECONDS_PER_CHAR per character and depends only on
    (text, voice, seed).
    """
    if espeak_available():
        return speak(text, voice=voice, sampling_rate=sampling_rate)
    # crc32, not hash(): Python's str hash is salted per process.
    text_seed = zlib.crc32(f"{voice}\0{text}".encode("utf-8"))
    seconds = max(0.5, SECONDS_PER_CHAR * len(text))
    return synthetic_signal(seconds, sampling_rate=sampling_rate, seed=((int(seed) % 2**32) << 32) | text_seed)


# Three speech engines (Debian packages flite, festival + festvox voices): one can be held out whole.
ENGINES = ("espeak-ng", "flite", "festival")
FESTIVAL_VOICES = {"slt_hts": "(voice_cmu_us_slt_arctic_hts)", "kal_diphone": "(voice_kal_diphone)"}


def speak_with(engine: str, voice: str, text: str, sampling_rate: int = SAMPLING_RATE) -> np.ndarray:
    """`text` spoken by `engine` ("espeak-ng", "flite" or "festival") in `voice`; float32 mono at
    `sampling_rate`. flite voices: kal, kal16, awb, rms, slt; festival: slt_hts, kal_diphone.
    RuntimeError (naming the engine and voice) when it is missing or fails."""
    if engine == "espeak-ng":
        return speak(text, voice=voice, sampling_rate=sampling_rate)
    if engine == "flite":
        exe, make = shutil.which("flite"), lambda out: ["flite", "-voice", voice, "-t", text, "-o", out]
    elif engine == "festival":
        if voice not in FESTIVAL_VOICES:
            raise RuntimeError(f"festival voice {voice!r} is not one of {sorted(FESTIVAL_VOICES)}")
        exe = shutil.which("text2wave")
        make = lambda out: ["text2wave", "-eval", FESTIVAL_VOICES[voice], "-o", out]
    else:
        raise RuntimeError(f"speech engine {engine!r} is not one of {ENGINES}")
    if exe is None:
        raise RuntimeError(f"{engine} is not installed (voice {voice!r}); apt-get install flite festival "
                           f"festvox-us-slt-hts festvox-kallpc16k")
    with tempfile.TemporaryDirectory(prefix=f"aura_{engine}_") as tmp:
        out = os.path.join(tmp, "speech.wav")
        try:
            proc = subprocess.run(make(out), input=text.encode("utf-8"), capture_output=True, timeout=120)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise RuntimeError(f"{engine} failed for voice {voice!r}: {exc}") from None
        if proc.returncode != 0 or not os.path.exists(out):
            raise RuntimeError(f"{engine} failed for voice {voice!r} (exit {proc.returncode}): "
                               f"{proc.stderr.decode('utf-8', 'replace').strip()}")
        data, sr = sf.read(out, dtype="float32", always_2d=True)
    if data.shape[0] == 0:
        raise RuntimeError(f"{engine} produced no audio for voice {voice!r} and text {text!r}")
    return to_mono_16k(data, sr, target_rate=sampling_rate)
