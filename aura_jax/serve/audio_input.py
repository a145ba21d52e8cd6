"""What a client sends, checked: a WAV file (HTTP) or raw PCM chunks (WebSocket) → 16 kHz mono float32
samples. Anything else is one `AudioInputError` naming what was wrong; nothing is resampled or mixed
down behind the client's back (the page resamples in the browser, and says so)."""

from __future__ import annotations

import io
import struct

import numpy as np

SAMPLING_RATE = 16000
PCM_FORMATS = {"s16le": np.dtype("<i2"), "f32le": np.dtype("<f4")}


class AudioInputError(ValueError):
    """Bad audio from a client: the message is sent back as it is."""


def decode_wav(data: bytes) -> np.ndarray:
    """A 16 kHz mono WAV file's samples (float32 in [-1, 1]). Errors: not a WAV, truncated, another
    rate or channel count, no samples."""
    import soundfile as sf

    if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        raise AudioInputError("not a WAV file (no RIFF/WAVE header)")
    declared = _data_chunk_bytes(data)
    try:
        with sf.SoundFile(io.BytesIO(data)) as f:
            rate, channels, frames = f.samplerate, f.channels, f.frames
            if rate != SAMPLING_RATE:
                raise AudioInputError(f"the WAV is {rate} Hz; this server takes {SAMPLING_RATE} Hz mono")
            if channels != 1:
                raise AudioInputError(f"the WAV has {channels} channels; this server takes mono")
            wave = f.read(dtype="float32", always_2d=True)[:, 0]
    except AudioInputError:
        raise
    except Exception as e:  # libsndfile's own message: unknown encoding, broken header, ...
        raise AudioInputError(f"unreadable WAV: {e}") from None
    if declared and declared[0] > len(data) - declared[1]:
        raise AudioInputError(f"truncated WAV: its header announces {declared[0]} bytes of samples, "
                              f"{len(data) - declared[1]} arrived")
    if frames == 0 or wave.size == 0:
        raise AudioInputError("the WAV holds no samples")
    return check_samples(wave)


def _data_chunk_bytes(data: bytes) -> tuple[int, int] | None:
    """(bytes the 'data' chunk announces, offset of its first byte), read from the RIFF chunk list
    (libsndfile reads a cut file without complaint); None without a data chunk header."""
    pos = 12
    while pos + 8 <= len(data):
        tag, size = data[pos:pos + 4], struct.unpack("<I", data[pos + 4:pos + 8])[0]
        if tag == b"data":
            if size == 0xFFFFFFFF:  # a streamed WAV of unknown length: nothing to compare
                return None
            return size, pos + 8
        pos += 8 + size + (size & 1)
    return None


def decode_pcm(data: bytes, fmt: str) -> np.ndarray:
    """One raw PCM chunk (16 kHz mono, little-endian `s16le` or `f32le`) → float32 samples."""
    dtype = PCM_FORMATS[fmt]
    if len(data) % dtype.itemsize:
        raise AudioInputError(f"a {fmt} chunk of {len(data)} bytes: not a whole number of "
                              f"{dtype.itemsize}-byte samples")
    x = np.frombuffer(data, dtype)
    wave = x.astype(np.float32) / 32768.0 if fmt == "s16le" else x.astype(np.float32)
    return check_samples(wave)


def check_samples(wave: np.ndarray) -> np.ndarray:
    """Samples that are audio: finite and within [-1, 1] (a little headroom for float files)."""
    if wave.size and not np.all(np.isfinite(wave)):
        raise AudioInputError("not audio: the samples hold NaN or infinity")
    if wave.size and float(np.max(np.abs(wave))) > 1.5:
        raise AudioInputError(f"not audio: samples reach {float(np.max(np.abs(wave))):.3g}, outside [-1, 1]")
    return wave


def encode_wav(wave: np.ndarray) -> bytes:
    """16-bit 16 kHz mono WAV bytes (for --record and for tests)."""
    import soundfile as sf

    buf = io.BytesIO()
    sf.write(buf, np.asarray(wave, np.float32), SAMPLING_RATE, format="WAV", subtype="PCM_16")
    return buf.getvalue()
