"""Whisper front end: parity with transformers' WhisperFeatureExtractor, loading, segments, patches."""

from __future__ import annotations

import functools

import numpy as np
import pytest
import soundfile as sf
import soxr

from aura_jax import audio

transformers = pytest.importorskip("transformers")
from transformers import WhisperFeatureExtractor  # noqa: E402

TOL = 1e-4


@functools.lru_cache(maxsize=None)
def extractor(n_mels: int) -> WhisperFeatureExtractor:
    return WhisperFeatureExtractor(feature_size=n_mels)


def reference_features(x: np.ndarray, n_mels: int) -> np.ndarray:
    """Extractor's default path (torch STFT when torch is installed)."""
    return extractor(n_mels)(x, sampling_rate=16000, return_tensors="np").input_features[0]


def reference_features_numpy(x: np.ndarray, n_mels: int) -> np.ndarray:
    """Extractor's numpy STFT path, on the 30 s padded/truncated clip as __call__ would build it."""
    padded = np.zeros(audio.N_SAMPLES, dtype=np.float32)
    n = min(len(x), audio.N_SAMPLES)
    padded[:n] = x[:n]
    return extractor(n_mels)._np_extract_fbank_features(padded[None], "cpu")[0]


def reference_valid_frames(num_samples: int) -> int:
    out = extractor(80)(
        np.full(num_samples, 0.1, dtype=np.float32),
        sampling_rate=16000,
        return_attention_mask=True,
        return_tensors="np",
    )
    return int(out["attention_mask"].sum())


def speechy(seconds: float, sr: int = 16000, seed: int = 0) -> np.ndarray:
    """Deterministic sum of modulated sines plus noise (float32 mono)."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(round(seconds * sr))) / sr
    x = np.zeros_like(t)
    for f in rng.uniform(80.0, 6000.0, size=5):
        x += rng.uniform(0.05, 0.2) * np.sin(2 * np.pi * f * t + rng.uniform(0, 2 * np.pi))
    x *= 0.6 + 0.4 * np.sin(2 * np.pi * rng.uniform(2.0, 5.0) * t)
    x += 0.02 * rng.standard_normal(t.size)
    return x.astype(np.float32)


def max_diff(a, b) -> float:
    a, b = np.asarray(a), np.asarray(b)
    assert a.shape == b.shape, (a.shape, b.shape)
    return float(np.abs(a.astype(np.float64) - b.astype(np.float64)).max())


# ---------------------------------------------------------------------------
# Log-mel parity
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("n_mels", [80, 128])
@pytest.mark.parametrize("seconds", [0.7, 12.0, 37.0])
def test_log_mel_matches_whisper_extractor(seconds, n_mels):
    x = speechy(seconds, seed=int(seconds * 10) + n_mels)
    ours = audio.log_mel_spectrogram(x, 16000, n_mels=n_mels)
    assert ours.shape == (n_mels, audio.N_FRAMES)
    assert ours.dtype == np.float32
    assert max_diff(ours, reference_features(x, n_mels)) <= TOL
    assert max_diff(ours, reference_features_numpy(x, n_mels)) <= TOL


@pytest.mark.parametrize("num_samples", [0, 1, 199, 200, 201, 359, 360, 80_037, 96_000, 464_000,
                                         audio.N_SAMPLES - 801, audio.N_SAMPLES - 800, audio.N_SAMPLES])
@pytest.mark.parametrize("scale", [0.1, 1e-6, 0.0])
def test_only_the_frames_that_hear_the_clip_are_computed_and_the_window_is_unchanged(num_samples, scale):
    """The 30 s window's frames whose samples are all padding are the clamp floor, not computed; every
    value equals featurising the whole zero-padded window (bit for bit), silent clips included."""
    x = (np.random.default_rng(num_samples).standard_normal(num_samples) * scale).astype(np.float32)
    whole = audio._log_mel_chunks(audio._pad_or_trim(x)[None], 128)[0]
    np.testing.assert_array_equal(audio._log_mel_window(x, 128), whole)
    np.testing.assert_array_equal(audio.log_mel_segments(x, 16000, 128)[0][0], whole)


def test_mel_filters_match_extractor():
    for n_mels in (80, 128):
        assert max_diff(audio.mel_filters(n_mels).T, extractor(n_mels).mel_filters) <= 1e-12


def test_truncation_ignores_audio_after_30s():
    x = speechy(31.0, seed=3)
    y = x.copy()
    y[audio.N_SAMPLES :] = 0.9  # change only the part past 30 s
    np.testing.assert_array_equal(audio.log_mel_spectrogram(x, 16000), audio.log_mel_spectrogram(y, 16000))


@pytest.mark.parametrize("num_samples", [1, 159, 160, 161, 320, 12345, 16000, 16001, 480000, 480001, 700000])
def test_num_valid_frames_matches_attention_mask(num_samples):
    assert audio.num_valid_frames(num_samples) == reference_valid_frames(num_samples)


def test_num_valid_frames_edges():
    assert audio.num_valid_frames(0) == 0
    assert audio.num_valid_frames(10**9) == audio.N_FRAMES


def test_log_mel_with_valid_frames():
    x = speechy(2.5, seed=4)
    features, valid = audio.log_mel_with_valid_frames(x, 16000, n_mels=80)
    assert valid == reference_valid_frames(len(x)) == 250
    np.testing.assert_array_equal(features, audio.log_mel_spectrogram(x, 16000, n_mels=80))


def test_44k1_input_is_resampled_with_soxr():
    x44 = speechy(5.0, sr=44100, seed=5)
    x16 = soxr.resample(x44, 44100, 16000, quality="HQ")
    ours = audio.log_mel_spectrogram(x44, 44100)
    assert max_diff(ours, reference_features(x16, 128)) <= TOL
    np.testing.assert_array_equal(ours, audio.log_mel_spectrogram(x16, 16000))
    _, valid = audio.log_mel_with_valid_frames(x44, 44100)
    assert valid == reference_valid_frames(len(x16))


def test_stereo_is_averaged():
    left, right = speechy(3.0, seed=6), speechy(3.0, seed=7)
    stereo = np.stack([left, right], axis=1)  # soundfile layout [T, C]
    mono = (left + right) / 2
    np.testing.assert_allclose(audio.to_mono_16k(stereo, 16000), mono, atol=1e-7)
    assert max_diff(audio.log_mel_spectrogram(stereo, 16000), reference_features(mono, 128)) <= TOL


def test_to_mono_16k_resamples_length():
    x = speechy(2.0, sr=22050, seed=8)
    y = audio.to_mono_16k(x, 22050)
    assert y.dtype == np.float32 and y.ndim == 1
    assert abs(len(y) - 32000) <= 1


# ---------------------------------------------------------------------------
# Loading
# ---------------------------------------------------------------------------


def snr_db(reference: np.ndarray, test: np.ndarray) -> float:
    err = reference - test
    return 10 * np.log10(np.sum(reference**2) / max(np.sum(err**2), 1e-20))


@pytest.mark.parametrize(
    "ext, fmt, subtype, min_snr",
    [
        ("wav", "WAV", "FLOAT", None),  # lossless float: exact
        ("flac", "FLAC", "PCM_16", 60.0),  # 16-bit quantization only
        ("ogg", "OGG", "VORBIS", 15.0),  # lossy
    ],
)
def test_load_audio_round_trip(tmp_path, ext, fmt, subtype, min_snr):
    x = 0.8 * speechy(2.0, seed=9)
    path = tmp_path / f"clip.{ext}"
    sf.write(path, x, 16000, format=fmt, subtype=subtype)
    y = audio.load_audio(path)
    assert y.dtype == np.float32 and y.shape == x.shape
    if min_snr is None:
        np.testing.assert_array_equal(y, x)
    else:
        assert snr_db(x, y) >= min_snr
    np.testing.assert_array_equal(audio.load_audio_bytes(path.read_bytes()), y)


def test_load_audio_mp3_round_trip(tmp_path):
    x = 0.8 * speechy(2.0, seed=10)
    path = tmp_path / "clip.mp3"
    try:
        sf.write(path, x, 16000, format="MP3", subtype="MPEG_LAYER_III")
    except Exception as exc:  # libsndfile built without the LAME encoder
        pytest.skip(f"soundfile cannot write mp3 here: {exc}")
    y = audio.load_audio(path)
    assert y.dtype == np.float32
    assert abs(len(y) - len(x)) <= 1152  # at most one mp3 frame of encoder padding
    n = min(len(x), len(y))
    assert snr_db(x[:n], y[:n]) >= 10.0


def test_load_audio_resamples_and_downmixes(tmp_path):
    left, right = speechy(1.5, sr=44100, seed=11), speechy(1.5, sr=44100, seed=12)
    stereo = np.stack([left, right], axis=1)
    path = tmp_path / "stereo44k.wav"
    sf.write(path, stereo, 44100, subtype="FLOAT")
    y = audio.load_audio(path)
    expected = soxr.resample((left + right) / 2, 44100, 16000, quality="HQ")
    np.testing.assert_allclose(y, expected, atol=1e-6)
    assert len(audio.load_audio(path, sampling_rate=8000)) == len(soxr.resample(left, 44100, 8000))


def test_missing_file_raises_audio_error(tmp_path):
    path = tmp_path / "nope.wav"
    with pytest.raises(audio.AudioError, match="nope.wav") as info:
        audio.load_audio(path)
    assert str(path) in str(info.value)


def test_empty_file_raises_audio_error(tmp_path):
    path = tmp_path / "empty.wav"
    sf.write(path, np.zeros(0, dtype=np.float32), 16000)
    with pytest.raises(audio.AudioError) as info:
        audio.load_audio(path)
    assert str(path) in str(info.value)


def test_corrupt_file_raises_audio_error(tmp_path):
    path = tmp_path / "corrupt.mp3"
    path.write_bytes(np.random.default_rng(0).bytes(4096))
    with pytest.raises(audio.AudioError) as info:
        audio.load_audio(path)
    assert str(path) in str(info.value)
    assert isinstance(info.value, ValueError)


def test_corrupt_bytes_raise_audio_error():
    with pytest.raises(audio.AudioError, match="row-7"):
        audio.load_audio_bytes(np.random.default_rng(1).bytes(4096), name="row-7")
    with pytest.raises(audio.AudioError, match="row-8"):
        audio.load_audio_bytes(b"", name="row-8")


# ---------------------------------------------------------------------------
# Segments
# ---------------------------------------------------------------------------


def test_log_mel_segments_long_clip():
    x = speechy(65.0, seed=13)
    features, valid = audio.log_mel_segments(x, 16000, n_mels=80)
    assert features.shape == (3, 80, audio.N_FRAMES)
    assert features.dtype == np.float32
    assert valid.tolist() == [3000, 3000, 500]
    np.testing.assert_array_equal(features[0], audio.log_mel_spectrogram(x[: audio.N_SAMPLES], 16000, n_mels=80))
    # Each segment is an independent 30 s Whisper window.
    for s in range(3):
        chunk = x[s * audio.N_SAMPLES : (s + 1) * audio.N_SAMPLES]
        assert max_diff(features[s], reference_features(chunk, 80)) <= TOL
        assert valid[s] == reference_valid_frames(len(chunk))

    capped, capped_valid = audio.log_mel_segments(x, 16000, n_mels=80, max_segments=2)
    assert capped.shape == (2, 80, audio.N_FRAMES)
    np.testing.assert_array_equal(capped, features[:2])
    assert capped_valid.tolist() == [3000, 3000]


def test_log_mel_segments_short_clip():
    x = speechy(4.0, seed=14)
    features, valid = audio.log_mel_segments(x, 16000)
    assert features.shape == (1, 128, audio.N_FRAMES)
    assert valid.tolist() == [400]
    np.testing.assert_array_equal(features[0], audio.log_mel_spectrogram(x, 16000))


# ---------------------------------------------------------------------------
# Patches
# ---------------------------------------------------------------------------


def patchify_loop(features: np.ndarray, p: int) -> np.ndarray:
    *lead, m, length = features.shape
    n = length // p
    out = np.empty((*lead, n, m * p), dtype=features.dtype)
    for i in range(n):
        for b in range(m):
            for j in range(p):
                out[..., i, b * p + j] = features[..., b, i * p + j]
    return out


def test_patchify_matches_loop():
    feats = np.random.default_rng(15).standard_normal((2, 3, 5, 12)).astype(np.float32)
    for p in (1, 3, 4, 12):
        got = audio.patchify(feats, p)
        assert got.shape == (2, 3, 12 // p, 5 * p)
        np.testing.assert_array_equal(got, patchify_loop(feats, p))
    # 2-D input (single example) and the real Whisper shape.
    whisper = np.random.default_rng(16).standard_normal((80, 3000)).astype(np.float32)
    got = audio.patchify(whisper, 10)
    assert got.shape == (300, 800)
    np.testing.assert_array_equal(got[7], whisper[:, 70:80].reshape(-1))


def test_patchify_jax_array():
    jnp = pytest.importorskip("jax.numpy")
    feats = np.random.default_rng(17).standard_normal((2, 4, 20)).astype(np.float32)
    got = audio.patchify(jnp.asarray(feats), 5)
    assert got.shape == (2, 4, 20)
    np.testing.assert_array_equal(np.asarray(got), patchify_loop(feats, 5))


def test_patchify_rejects_non_divisor():
    with pytest.raises(ValueError, match="patch_frames"):
        audio.patchify(np.zeros((80, 3000), dtype=np.float32), 7)
