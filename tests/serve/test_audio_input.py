"""The server's one audio conversion (no models here): a file of any rate, channel count, sample format and
container, or a PCM stream in pieces of any length, becomes the 16 kHz mono samples that averaging the
channels and `soxr.resample` of the whole give, computed here independently, sample for sample. The stream
resampled as it arrives hears exactly that too (soxr's streaming state carries across pieces), so the
WebSocket needs no tolerance against offline. A file that decodes to hours is refused at the limit,
having decoded little more than the limit."""

import functools
import io

import numpy as np
import pytest
import soundfile as sf
import soxr

from aura_jax.serve.audio_input import AudioInputError, AudioTooLong, PcmStream, decode_file

from .conftest import question


def speech(rate: int, channels: int) -> np.ndarray:
    """Spoken question 0 at `rate`, channels different from one another (so that a downmix taking one
    channel is caught): [frames, channels] float32."""
    x = soxr.resample(question(0).astype(np.float32) / 32768, 16000, rate)
    return np.stack([x * (0.9 - 0.3 * c) for c in range(channels)], axis=1)


def encoded(x: np.ndarray, rate: int, fmt: str = "WAV", subtype: str | None = None) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, x, rate, format=fmt, subtype=subtype)
    return buf.getvalue()


def resampled_whole(data: bytes) -> np.ndarray:
    """What the server should hear: libsndfile's samples, the channels averaged, soxr over the whole clip."""
    x, rate = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)
    mono = x.mean(axis=1)
    return mono if rate == 16000 else soxr.resample(mono, rate, 16000, quality="HQ")


FILES = {  # name: (rate, channels, container, libsndfile subtype)
    "22.05 kHz mono 16-bit WAV": (22050, 1, "WAV", "PCM_16"),
    "44.1 kHz stereo 16-bit WAV": (44100, 2, "WAV", "PCM_16"),
    "48 kHz stereo 24-bit WAV": (48000, 2, "WAV", "PCM_24"),
    "8 kHz mono 8-bit WAV": (8000, 1, "WAV", "PCM_U8"),
    "32 kHz 6-channel 32-bit WAV": (32000, 6, "WAV", "PCM_32"),
    "16 kHz mono float WAV": (16000, 1, "WAV", "FLOAT"),
    "44.1 kHz stereo MP3": (44100, 2, "MP3", None),
    "48 kHz stereo FLAC": (48000, 2, "FLAC", "PCM_16"),
    "44.1 kHz stereo OGG Vorbis": (44100, 2, "OGG", "VORBIS"),
}


@pytest.mark.parametrize("name", list(FILES))
def test_every_file_is_heard_as_its_channels_averaged_and_resampled_whole(name):
    rate, channels, fmt, subtype = FILES[name]
    data = encoded(speech(rate, channels), rate, fmt, subtype)
    heard = decode_file(data, max_seconds=30)
    assert heard.dtype == np.float32 and np.array_equal(heard, resampled_whole(data))
    assert heard.size == pytest.approx(question(0).size, abs=0.02 * 16000)  # the clip's length, at 16 kHz


def test_16_kHz_mono_passes_unchanged():
    wave = question(0).astype(np.float32) / 32768
    assert np.array_equal(decode_file(encoded(wave, 16000, subtype="FLOAT"), 30), wave)


STREAMS = [(8000, 1, "s16le"), (22050, 2, "s16le"), (44100, 2, "s16le"), (48000, 2, "f32le"), (16000, 1, "s16le")]


@pytest.mark.parametrize("rate,channels,fmt", STREAMS)
def test_a_stream_in_uneven_pieces_is_heard_as_the_whole_resampled_at_once(rate, channels, fmt):
    x = speech(rate, channels)
    raw = np.round(x * 32767).astype("<i2") if fmt == "s16le" else x.astype("<f4")
    data = raw.tobytes()
    # pieces of every size, most ending inside a frame (an odd byte of s16le, one channel of a stereo frame)
    cuts = np.unique(np.r_[0, np.cumsum(np.random.default_rng(rate).integers(1, 9000, 400)), len(data)])
    pcm = PcmStream(fmt, rate, channels)
    heard = np.concatenate([pcm.push(data[a:b]) for a, b in zip(cuts, cuts[1:]) if a < len(data)] + [pcm.end()])
    whole = resampled_whole(encoded(raw, rate, subtype="PCM_16" if fmt == "s16le" else "FLOAT"))
    assert np.array_equal(heard, whole)  # bit for bit: no tolerance to state


def test_a_partial_frame_is_carried_over_and_refused_only_if_the_stream_ends_inside_it():
    pcm = PcmStream("s16le", 16000, 2)
    assert pcm.push(b"\x00\x10\x00").size == 0  # 3 of a stereo frame's 4 bytes
    assert np.array_equal(pcm.push(b"\x30"), [np.float32((0x1000 + 0x3000) / 2 / 32768)])
    pcm.push(b"\x01")
    with pytest.raises(AudioInputError, match="ended inside a frame: 1 bytes left over, not a whole 4-byte frame"):
        pcm.end()


@functools.lru_cache(maxsize=None)
def bomb() -> bytes:
    """An hour of digital silence at 8 kHz as FLAC: ~90 KB that decode to 115 MB of float32 (460 MB at 16 kHz)."""
    buf = io.BytesIO()
    with sf.SoundFile(buf, "w", 8000, 1, format="FLAC", subtype="PCM_16") as f:
        minute = np.zeros(8000 * 60, np.int16)
        for _ in range(60):
            f.write(minute)
    return buf.getvalue()


def test_a_decompression_bomb_is_refused_at_the_limit_not_after_decoding_it():
    import tracemalloc

    assert len(bomb()) < 200_000
    tracemalloc.start()
    try:
        with pytest.raises(AudioTooLong, match="limit of 5 s per question"):
            decode_file(bomb(), max_seconds=5)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 8 * 2**20, f"{peak / 2**20:.0f} MiB decoded to refuse it"  # 5 s and a block, not an hour
