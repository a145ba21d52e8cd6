"""Whisper audio front end on the host: loading, resampling, log-mel, patching.

Everything here is numpy except `patchify`, which also accepts JAX arrays.
`log_mel_spectrogram` reproduces `transformers.WhisperFeatureExtractor`
(both its torch and numpy paths) to within 1e-4.
"""

from __future__ import annotations

import contextlib
import functools
import io
import math
import os
import sys
import tempfile
import threading
import typing
import warnings

import numpy as np
import soundfile as sf
import soxr

SAMPLING_RATE = 16000
N_FFT = 400
HOP_LENGTH = 160
CHUNK_SECONDS = 30
N_SAMPLES = CHUNK_SECONDS * SAMPLING_RATE  # 480000 samples per 30 s window
N_FRAMES = N_SAMPLES // HOP_LENGTH  # 3000 mel frames per 30 s window


class AudioError(ValueError):
    """An audio file (or byte string) could not be read or holds no audio."""


# ---------------------------------------------------------------------------
# Loading
# ---------------------------------------------------------------------------


def _read_soundfile(source) -> tuple[np.ndarray, int]:
    """Decode with libsndfile: float32 [T, C] and the file's sample rate."""
    data, sr = sf.read(source, dtype="float32", always_2d=True)
    return data, int(sr)


# libsndfile's mp3 decoder (mpg123) writes notes on damaged frames straight to file descriptor 2
# ("Note: Illegal Audio-MPEG-Header ...", "Note: Trying to resync..."): a corrupt clip is already
# reported once, as a skipped row or an AudioError. While any thread decodes, fd 2 goes to a
# temporary file; when the last decode ends, lines that are not such notes are written back.
_DECODER_NOTES = (b"Note: ", b"Warning: Xing stream size", b"[src/", b"Warning: Encountered more data")
_stderr_lock = threading.Lock()
_stderr_users = 0
_stderr_saved: tuple[int, typing.IO[bytes]] | None = None


@contextlib.contextmanager
def _decoder_notes_silenced():
    global _stderr_users, _stderr_saved
    with _stderr_lock:
        if _stderr_users == 0:
            try:
                sys.stderr.flush()
                capture = tempfile.TemporaryFile()
                _stderr_saved = (os.dup(2), capture)
                os.dup2(capture.fileno(), 2)
            except (OSError, ValueError):  # no usable fd 2: nothing to silence
                _stderr_saved = None
        _stderr_users += 1
    try:
        yield
    finally:
        with _stderr_lock:
            _stderr_users -= 1
            if _stderr_users == 0 and _stderr_saved is not None:
                saved, capture = _stderr_saved
                _stderr_saved = None
                os.dup2(saved, 2)
                os.close(saved)
                capture.seek(0)
                kept = [line for line in capture.read().splitlines(keepends=True)
                        if not line.lstrip().startswith(_DECODER_NOTES)]
                capture.close()
                if kept:
                    os.write(2, b"".join(kept))


def _read_librosa(source) -> tuple[np.ndarray, int]:
    """Decode with librosa (audioread backends), as float32 [T, C]."""
    import librosa  # slow import; only needed when libsndfile fails

    # librosa warns that soundfile failed and that audioread is deprecated; we already know, and
    # the final error (if any) says what went wrong. Process-wide filters, set once: a
    # warnings.catch_warnings() per call is not thread-safe (the scan decodes in threads) and leaks.
    warnings.filterwarnings("ignore", message=r"PySoundFile failed", category=UserWarning)
    warnings.filterwarnings("ignore", category=FutureWarning, module=r"librosa(\.|$)")
    data, sr = librosa.load(source, sr=None, mono=False, dtype=np.float32)
    data = np.asarray(data, dtype=np.float32)
    # librosa is channel-major ([C, T] or [T]); go to soundfile's [T, C].
    data = data[:, None] if data.ndim == 1 else data.T
    return data, int(sr)


def _decode(make_source, name: str, sampling_rate: int) -> np.ndarray:
    """Decode with soundfile, then librosa; return mono float32 at `sampling_rate`.

    `make_source` returns a fresh path or file object per attempt, because a
    failed decode may leave a file object half-consumed.
    """
    errors = []
    data = sr = None
    for reader in (_read_soundfile, _read_librosa):
        try:
            with _decoder_notes_silenced():
                data, sr = reader(make_source())
            break
        except Exception as exc:  # any decoder failure becomes one AudioError below
            detail = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            errors.append(f"{reader.__name__.strip('_')}: {detail}")
    if data is None:
        # `from None`: the caller gets one AudioError naming the file, not a
        # chain of libsndfile/audioread tracebacks.
        raise AudioError(f"cannot decode audio {name!s}: " + "; ".join(errors)) from None
    if data.shape[0] == 0:
        raise AudioError(f"audio {name!s} contains no samples")
    if sr <= 0:
        raise AudioError(f"audio {name!s} has invalid sample rate {sr}")
    return to_mono_16k(data, sr, target_rate=sampling_rate)


def load_audio(path, sampling_rate: int = SAMPLING_RATE) -> np.ndarray:
    """Read an audio file (wav/flac/ogg/mp3/...) as float32 mono at `sampling_rate`.

    Raises AudioError naming the path if the file is missing, unreadable or empty.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise AudioError(f"audio file not found: {path}")
    return _decode(lambda: path, path, sampling_rate)


def load_audio_bytes(data: bytes, sampling_rate: int = SAMPLING_RATE, name: str = "<bytes>") -> np.ndarray:
    """Decode an encoded audio byte string (e.g. a parquet audio cell) as float32 mono.

    `name` is only used in error messages.
    """
    if not data:
        raise AudioError(f"audio {name} is empty (0 bytes)")
    return _decode(lambda: io.BytesIO(data), name, sampling_rate)


def to_mono_16k(waveform, sampling_rate: int, target_rate: int = SAMPLING_RATE) -> np.ndarray:
    """Downmix [T] or [T, C] audio to mono and resample it to `target_rate` (float32 [T'])."""
    x = np.asarray(waveform, dtype=np.float32)
    if x.ndim == 2:
        # soundfile layout is [frames, channels]; average the channels.
        x = x.mean(axis=1, dtype=np.float32) if x.shape[1] > 1 else x[:, 0]
    elif x.ndim != 1:
        raise ValueError(f"waveform must be [T] or [T, C], got shape {x.shape}")
    if int(sampling_rate) != int(target_rate) and x.size:
        x = soxr.resample(x, int(sampling_rate), int(target_rate), quality="HQ")
    return np.ascontiguousarray(x, dtype=np.float32)


# ---------------------------------------------------------------------------
# Log-mel
# ---------------------------------------------------------------------------


@functools.lru_cache(maxsize=8)
def mel_filters(n_mels: int = 128) -> np.ndarray:
    """Slaney mel filter bank [n_mels, N_FFT//2+1] (float64), as Whisper uses."""
    import librosa  # slow import; cached result so it happens once

    # float64 matches transformers' mel_filter_bank to ~1e-16 (float32 is ~5e-8 off).
    fb = librosa.filters.mel(
        sr=SAMPLING_RATE, n_fft=N_FFT, n_mels=n_mels, htk=False, norm="slaney", dtype=np.float64
    )
    fb.setflags(write=False)
    return fb


@functools.lru_cache(maxsize=64)
def vtlp_filters(n_mels: int, alpha: float, boundary_hz: float = 4800.0) -> np.ndarray:
    """`mel_filters` on a frequency axis warped by VTLP (Jaitly & Hinton 2013): band m of the warped bank
    reads the spectrum where band m reads it at w(f), w(f) = α·f up to f₀ = boundary·min(α, 1)/α, then
    linear to the Nyquist frequency (kept fixed): energy at frequency f lands in the bands where the plain
    bank puts energy at w(f). α > 1 moves the spectrum's features (formants, harmonics) up by α below
    f₀, as a shorter vocal tract would; α < 1 down. α = 1 is `mel_filters` exactly."""
    fb = mel_filters(n_mels)
    if alpha == 1.0:
        return fb
    nyquist = SAMPLING_RATE / 2
    f = np.linspace(0.0, nyquist, fb.shape[1])
    f0 = boundary_hz * min(alpha, 1.0) / alpha
    warped = np.where(f <= f0, alpha * f,
                      nyquist - (nyquist - alpha * f0) / (nyquist - f0) * (nyquist - f))
    out = np.stack([np.interp(warped, f, row) for row in fb])
    out.setflags(write=False)
    return out


@functools.lru_cache(maxsize=1)
def _hann_window() -> np.ndarray:
    """Periodic Hann window of length N_FFT (torch.hann_window's default)."""
    n = np.arange(N_FFT, dtype=np.float64)
    w = 0.5 - 0.5 * np.cos(2.0 * np.pi * n / N_FFT)
    w.setflags(write=False)
    return w


def _pad_or_trim(x: np.ndarray, length: int = N_SAMPLES) -> np.ndarray:
    """Zero-pad or truncate a 1-D array to `length` samples."""
    if x.shape[0] >= length:
        return x[:length]
    return np.pad(x, (0, length - x.shape[0]))


def _log_mel_chunks(chunks: np.ndarray, n_mels: int, filters: np.ndarray | None = None) -> np.ndarray:
    """Whisper log-mel of 16 kHz windows [B, N_SAMPLES] -> float32 [B, n_mels, N_FRAMES]; `filters`: another
    bank (`vtlp_filters`) instead of `mel_filters(n_mels)`."""
    x = np.asarray(chunks, dtype=np.float64)
    half = N_FFT // 2
    # Centered STFT: reflect-pad by n_fft/2 each side (torch.stft default).
    x = np.pad(x, ((0, 0), (half, half)), mode="reflect")
    # 1 + N_SAMPLES // HOP frames = 3001; Whisper drops the last one, so only
    # frame the first N_FRAMES.
    frames = np.lib.stride_tricks.sliding_window_view(x, N_FFT, axis=-1)[:, : N_FRAMES * HOP_LENGTH : HOP_LENGTH]
    spec = np.fft.rfft(frames * _hann_window(), axis=-1)  # [B, T, 201]
    power = spec.real**2 + spec.imag**2
    mel = np.matmul(mel_filters(n_mels) if filters is None else filters, power.swapaxes(-1, -2))  # [B, n_mels, T]
    log_spec = np.log10(np.maximum(mel, 1e-10))
    # Dynamic range clamp is per window (the extractor does it per example).
    peak = log_spec.max(axis=(-2, -1), keepdims=True)
    log_spec = np.maximum(log_spec, peak - 8.0)
    return ((log_spec + 4.0) / 4.0).astype(np.float32)


def _log_mel_window(x: np.ndarray, n_mels: int, filters: np.ndarray | None = None) -> np.ndarray:
    """`_log_mel_chunks` of one 30 s window holding `x` (16 kHz, then zeros), computing only the frames
    that hear a sample of `x`. A frame whose 400 samples all lie in the zero padding has power 0, so its
    value is the clamp floor; for a 5 s clip those are 5/6 of the window, and computing them was most of
    a training batch's featurisation. Same values (tests/test_audio.py)."""
    n = min(x.shape[0], N_SAMPLES)
    half = N_FFT // 2
    heard = -(-(n + half) // HOP_LENGTH)  # frames j with 160j - 200 < n
    if n > N_SAMPLES - 2 * N_FFT:  # the window's end padding would reflect speech: the full path
        return _log_mel_chunks(_pad_or_trim(x)[None], n_mels, filters)[0]
    chunk = np.zeros(heard * HOP_LENGTH + half, np.float64)  # frames < heard end before its end padding
    chunk[:n] = x[:n]
    padded = np.pad(chunk, (half, half), mode="reflect")
    frames = np.lib.stride_tricks.sliding_window_view(padded, N_FFT)[: heard * HOP_LENGTH : HOP_LENGTH]
    spec = np.fft.rfft(frames * _hann_window(), axis=-1)  # [heard, 201]
    power = spec.real**2 + spec.imag**2
    bank = mel_filters(n_mels) if filters is None else filters
    log_spec = np.log10(np.maximum(np.matmul(bank, power.T), 1e-10))  # [n_mels, heard]
    silent = np.log10(np.maximum(0.0, 1e-10))  # a frame of zeros (mel power exactly 0)
    peak = max(log_spec.max(), silent)
    out = np.empty((n_mels, N_FRAMES), np.float32)
    out[:, :heard] = (np.maximum(log_spec, peak - 8.0) + 4.0) / 4.0  # float64 math, stored as float32
    out[:, heard:] = (max(silent, peak - 8.0) + 4.0) / 4.0
    return out


def num_valid_frames(num_samples_16k: int) -> int:
    """Number of non-padding mel frames for a clip of `num_samples_16k` samples.

    Same count as the extractor's frame mask (sample mask subsampled every
    HOP_LENGTH samples), i.e. ceil(n / 160), capped at N_FRAMES.
    """
    n = min(max(int(num_samples_16k), 0), N_SAMPLES)
    return min(-(-n // HOP_LENGTH), N_FRAMES)


def log_mel_spectrogram(waveform: np.ndarray, sampling_rate: int, n_mels: int = 128) -> np.ndarray:
    """Whisper log-mel features [n_mels, 3000] float32 of the first 30 s of `waveform`.

    `waveform` is [T] or [T, C] at `sampling_rate`; it is downmixed, resampled
    to 16 kHz, then zero-padded or truncated to 30 s.
    """
    return log_mel_with_valid_frames(waveform, sampling_rate, n_mels)[0]


def log_mel_with_valid_frames(
    waveform: np.ndarray, sampling_rate: int, n_mels: int = 128
) -> tuple[np.ndarray, int]:
    """Like `log_mel_spectrogram`, also returning the number of non-padding frames."""
    x = to_mono_16k(waveform, sampling_rate)
    return _log_mel_window(x, n_mels), num_valid_frames(x.shape[0])


def log_mel_segments(
    waveform: np.ndarray, sampling_rate: int, n_mels: int = 128, max_segments: int | None = None,
    filters: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Split audio into consecutive 30 s windows and featurize each.

    Returns features [S, n_mels, 3000] float32 and valid frame counts [S] int32.
    S = ceil(duration / 30 s) (at least 1); the last window is zero-padded;
    `max_segments` keeps only the first S windows; `filters`: another mel bank (`vtlp_filters`).
    """
    x = to_mono_16k(waveform, sampling_rate)
    num_segments = max(1, math.ceil(x.shape[0] / N_SAMPLES))
    if max_segments is not None:
        if max_segments < 1:
            raise ValueError(f"max_segments must be >= 1, got {max_segments}")
        num_segments = min(num_segments, max_segments)
    pieces = [x[s * N_SAMPLES : (s + 1) * N_SAMPLES] for s in range(num_segments)]
    valid = np.array([num_valid_frames(p.shape[0]) for p in pieces], dtype=np.int32)
    # One window at a time (bounded memory), each computing only the frames that hear its samples.
    features = np.stack([_log_mel_window(p.astype(np.float32), n_mels, filters) for p in pieces])
    return features, valid


def patchify(features, patch_frames: int):
    """Group mel frames into patches: [..., M, L] -> [..., L // P, M * P].

    Patch i is features[..., :, i*P:(i+1)*P] flattened row-major (mel bins
    major, frames minor). Works on numpy and JAX arrays alike.
    """
    *lead, m, length = features.shape
    p = int(patch_frames)
    if p <= 0 or length % p != 0:
        raise ValueError(f"patch_frames={patch_frames} must be positive and divide the frame count {length}")
    n = length // p
    x = features.reshape(*lead, m, n, p)  # [..., M, N, P]
    x = x.swapaxes(-3, -2)  # [..., N, M, P]
    return x.reshape(*lead, n, m * p)
