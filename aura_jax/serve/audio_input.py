"""What a client sends → 16 kHz mono float32 samples, or one `AudioInputError` naming what was wrong. One
conversion for every way in (`To16kMono`): the channels averaged, then soxr's streaming resampler, which
gives the samples `soxr.resample` gives on the whole clip (its state carries across pieces), so a stream
resampled as it arrives hears what the same audio resampled whole would.

    decode_file   a file (HTTP: WAV of any rate, channel count and sample format, MP3, FLAC, OGG) decoded
                  in blocks, so that a small file that decodes to hours is refused at the limit
    PcmStream     raw PCM messages (WebSocket) at 8-48 kHz, mono or stereo, converted as they arrive
"""

from __future__ import annotations

import io
import struct

import numpy as np

SAMPLING_RATE = 16000
PCM_FORMATS = {"s16le": np.dtype("<i2"), "f32le": np.dtype("<f4")}
STREAM_RATES = (8000, 48000)  # a WebSocket stream's sample_rate, inclusive
STREAM_CHANNELS = (1, 2)
FILE_RATES = (4000, 384000)  # a file's sample rate, inclusive (outside: not speech a microphone recorded)
FILE_FORMATS = {"WAV": "WAV", "WAVEX": "WAV", "MP3": "MP3", "FLAC": "FLAC", "OGG": "OGG"}  # libsndfile's names
TAKES = ("this server takes WAV (8/16/24/32-bit PCM or float), MP3, FLAC or OGG, at any sample rate from "
         f"{FILE_RATES[0] // 1000} to {FILE_RATES[1] // 1000} kHz, mono or more channels")
BLOCK_SAMPLES = 2**18  # decoded at a time (1 MiB of float32): the memory a file costs beyond its 16 kHz samples
QUALITY = "HQ"  # soxr's, as aura_jax.audio.to_mono_16k resamples training and eval audio


class AudioInputError(ValueError):
    """Bad audio from a client: the message is sent back as it is, with HTTP `status`."""

    status = 400


class AudioTooLong(AudioInputError):
    status = 413


class To16kMono:
    """Frames [n, channels] at `rate`, piece by piece → 16 kHz mono float32 (`push`), then the resampler's
    tail (`end`). Downmix: the mean of the channels. At 16 kHz the samples pass unchanged."""

    def __init__(self, rate: int, channels: int):
        import soxr

        self.channels = channels
        self.resampler = None if rate == SAMPLING_RATE else soxr.ResampleStream(rate, SAMPLING_RATE, 1, dtype="float32",
                                                                                quality=QUALITY)

    def push(self, frames: np.ndarray, last: bool = False) -> np.ndarray:
        x = np.asarray(frames, np.float32).reshape(-1, self.channels)
        mono = x.mean(axis=1, dtype=np.float32) if self.channels > 1 else x[:, 0]  # as to_mono_16k averages
        if self.resampler is None:
            return np.ascontiguousarray(mono)
        return self.resampler.resample_chunk(np.ascontiguousarray(mono), last=last)

    def end(self) -> np.ndarray:
        return self.push(np.zeros((0, self.channels), np.float32), last=True)


def decode_file(data: bytes, max_seconds: float) -> np.ndarray:
    """An audio file's samples at 16 kHz mono. Errors: not a file this server reads (naming what it takes),
    a rate outside FILE_RATES, a truncated WAV, no samples, more than `max_seconds` (AudioTooLong, found
    while decoding: at most one block past the limit is ever decoded)."""
    import soundfile as sf

    kind = _container(data)
    try:
        f = sf.SoundFile(io.BytesIO(data))
    except Exception as e:  # libsndfile's own message only where it says something about the file
        # 1 is "Format not recognised"; 2 and 7 blame the "file" (a buffer here) for having run out: both would
        # only confuse, where a broken 'fmt ' chunk or an unsupported encoding is worth saying
        detail = f" ({e.error_string.rstrip('.')})" if getattr(e, "code", 1) not in (1, 2, 7) else ""
        what = f"a corrupt or unsupported {kind} file{detail}" if kind else "not an audio file this server reads"
        raise AudioInputError(f"{what}; {TAKES}") from None
    with f:
        if f.format not in FILE_FORMATS:
            raise AudioInputError(f"the file is {f.format} audio; {TAKES}")
        if not FILE_RATES[0] <= f.samplerate <= FILE_RATES[1]:
            raise AudioInputError(f"the file is {f.samplerate} Hz; {TAKES}")
        if kind == "WAV":
            _check_wav_length(data)
        name, wave = FILE_FORMATS[f.format], _read_blocks(f, max_seconds)
    if wave.size == 0:
        raise AudioInputError(f"the {name} file holds no samples")
    return wave


def _read_blocks(f, max_seconds: float) -> np.ndarray:
    """Decode, convert and count block by block; the limit is checked on the 16 kHz samples so far."""
    to16k, out, total = To16kMono(f.samplerate, f.channels), [], 0
    block = max(1, BLOCK_SAMPLES // f.channels)
    while True:
        try:
            # until nothing comes: a header's frame count (an estimate for MP3) may promise more than is there
            frames = f.read(block, dtype="float32", always_2d=True)
        except Exception as e:
            raise AudioInputError(f"a corrupt {FILE_FORMATS[f.format]} file ({e}); {TAKES}") from None
        piece = to16k.push(check_samples(frames)) if len(frames) else to16k.end()
        out.append(piece)
        total += piece.size
        if total > max_seconds * SAMPLING_RATE:
            raise AudioTooLong(f"the audio is longer than this server's limit of {max_seconds:g} s per question "
                               "(--max-audio-seconds)")
        if not len(frames):
            return np.concatenate(out)


def _container(data: bytes) -> str | None:
    """The format a file's first bytes announce (for the error message of one libsndfile cannot open)."""
    if data[:4] == b"RIFF" and data[8:12] == b"WAVE":
        return "WAV"
    if data[:4] == b"fLaC":
        return "FLAC"
    if data[:4] == b"OggS":
        return "OGG"
    if data[:3] == b"ID3" or (len(data) > 1 and data[0] == 0xFF and data[1] & 0xE0 == 0xE0):  # tag or frame sync
        return "MP3"
    return None


def _check_wav_length(data: bytes) -> None:
    """libsndfile reads a cut WAV without complaint: compare what the 'data' chunk announces with what came."""
    declared = _data_chunk_bytes(data)
    if declared and declared[0] > len(data) - declared[1]:
        raise AudioInputError(f"truncated WAV: its header announces {declared[0]} bytes of samples, "
                              f"{len(data) - declared[1]} arrived")


def _data_chunk_bytes(data: bytes) -> tuple[int, int] | None:
    """(bytes the 'data' chunk announces, offset of its first byte), read from the RIFF chunk list; None
    without a data chunk header."""
    pos = 12
    while pos + 8 <= len(data):
        tag, size = data[pos:pos + 4], struct.unpack("<I", data[pos + 4:pos + 8])[0]
        if tag == b"data":
            if size == 0xFFFFFFFF:  # a streamed WAV of unknown length: nothing to compare
                return None
            return size, pos + 8
        pos += 8 + size + (size & 1)
    return None


class PcmStream:
    """Raw little-endian PCM (`s16le` or `f32le`, `channels` interleaved, at `rate`) in messages of any
    length → 16 kHz mono float32 as each arrives. A message may end inside a frame (an odd byte of s16le,
    one channel of a stereo frame): the rest of that frame is carried over to the next message; `end()`
    refuses a stream that stops inside one."""

    def __init__(self, fmt: str, rate: int, channels: int):
        self.fmt, self.dtype, self.channels = fmt, PCM_FORMATS[fmt], channels
        self.frame_bytes = self.dtype.itemsize * channels
        self.pending = b""
        self.to16k = To16kMono(rate, channels)

    def push(self, data: bytes) -> np.ndarray:
        buf = self.pending + data
        whole = len(buf) - len(buf) % self.frame_bytes
        self.pending = buf[whole:]
        x = np.frombuffer(buf[:whole], self.dtype).reshape(-1, self.channels)
        frames = x.astype(np.float32) / 32768.0 if self.fmt == "s16le" else x.astype(np.float32)
        return self.to16k.push(check_samples(frames))

    def end(self) -> np.ndarray:
        if self.pending:
            raise AudioInputError(f"the stream ended inside a frame: {len(self.pending)} bytes left over, not a "
                                  f"whole {self.frame_bytes}-byte frame ({self.channels} channel(s) of {self.fmt})")
        return self.to16k.end()


def check_samples(wave: np.ndarray) -> np.ndarray:
    """Samples that are audio: finite and within [-1, 1] (a little headroom for float files)."""
    if wave.size and not np.all(np.isfinite(wave)):
        raise AudioInputError("not audio: the samples hold NaN or infinity")
    if wave.size and float(np.max(np.abs(wave))) > 1.5:
        raise AudioInputError(f"not audio: samples reach {float(np.max(np.abs(wave))):.3g}, outside [-1, 1]")
    return wave


def encode_wav(wave: np.ndarray, rate: int = SAMPLING_RATE) -> bytes:
    """16-bit mono WAV bytes (for --record and for tests)."""
    import soundfile as sf

    buf = io.BytesIO()
    sf.write(buf, np.asarray(wave, np.float32), rate, format="WAV", subtype="PCM_16")
    return buf.getvalue()
