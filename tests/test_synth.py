"""Synthesized speech: the deterministic fallback and (when installed) espeak-ng."""

from __future__ import annotations

import numpy as np
import pytest

from aura_jax import audio, synth

needs_espeak = pytest.mark.skipif(
    not synth.espeak_available(), reason="espeak-ng not installed (apt-get install -y espeak-ng)"
)

SENTENCE = "The quick brown fox jumps over the lazy dog."


def rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x, dtype=np.float64))))


def test_synthetic_signal_deterministic_and_non_silent():
    a = synth.synthetic_signal(1.5, seed=3)
    b = synth.synthetic_signal(1.5, seed=3)
    c = synth.synthetic_signal(1.5, seed=4)
    assert a.dtype == np.float32 and a.shape == (24000,)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert np.abs(a).max() <= 1.0
    assert rms(a) > 0.05
    # Syllable envelope: loudness varies over 50 ms windows, unlike a steady tone.
    frame_rms = np.sqrt(np.mean(a.reshape(-1, 800).astype(np.float64) ** 2, axis=1))
    assert frame_rms.max() > 3 * frame_rms.min()


def test_synthetic_signal_other_rate():
    x = synth.synthetic_signal(0.5, sampling_rate=22050, seed=0)
    assert x.shape == (11025,)


def test_synthesize_fallback_without_espeak(monkeypatch):
    monkeypatch.setattr(synth, "espeak_available", lambda: False)
    text = "hello there, general kenobi"
    a = synth.synthesize(text, seed=1)
    np.testing.assert_array_equal(a, synth.synthesize(text, seed=1))
    assert not np.array_equal(a, synth.synthesize(text, seed=2))
    assert not np.array_equal(a[:8000], synth.synthesize("another sentence entirely", seed=1)[:8000])
    assert abs(len(a) / 16000 - 0.07 * len(text)) < 0.01
    assert rms(a) > 0.05


def test_speak_reports_missing_espeak(monkeypatch):
    monkeypatch.setattr(synth.shutil, "which", lambda name: None)
    with pytest.raises(RuntimeError, match="en-gb"):
        synth.speak("hello", voice="en-gb")


@needs_espeak
def test_speak_produces_16k_speech():
    x = synth.speak(SENTENCE)
    assert x.dtype == np.float32 and x.ndim == 1
    # ~9 words at 160 wpm is ~3.4 s; allow generous slack for pauses.
    assert 1.5 < len(x) / 16000 < 6.0
    assert rms(x) > 0.01 and np.abs(x).max() <= 1.0
    # Native espeak rate is 22050 Hz; asking for it must give ~22050/16000 more samples.
    y = synth.speak(SENTENCE, sampling_rate=22050)
    assert abs(len(y) / len(x) - 22050 / 16000) < 0.01
    # Slower speech lasts longer.
    assert len(synth.speak(SENTENCE, speed=100)) > 1.3 * len(x)
    # It goes through the front end.
    features, valid = audio.log_mel_with_valid_frames(x, 16000)
    assert valid == audio.num_valid_frames(len(x)) and features.shape == (128, 3000)


@needs_espeak
def test_voices_differ():
    voices = ["en-us", "en-gb-scotland", "en-us+f3"]
    waves = {v: synth.speak(SENTENCE, voice=v) for v in voices}
    mels = {v: audio.log_mel_with_valid_frames(w, 16000, n_mels=80) for v, w in waves.items()}
    for i, a in enumerate(voices):
        for b in voices[i + 1 :]:
            n = min(len(waves[a]), len(waves[b]))
            assert not np.allclose(waves[a][:n], waves[b][:n], atol=1e-3), (a, b)
            # Spectra differ over the speech itself (padding frames are alike).
            frames = min(mels[a][1], mels[b][1])
            assert np.abs(mels[a][0][:, :frames] - mels[b][0][:, :frames]).mean() > 0.1, (a, b)
    # Same voice, same text: espeak is deterministic.
    np.testing.assert_array_equal(waves["en-us"], synth.speak(SENTENCE, voice="en-us"))
    # synthesize() uses espeak when it is there.
    np.testing.assert_array_equal(synth.synthesize(SENTENCE, voice="en-gb-scotland"), waves["en-gb-scotland"])


@needs_espeak
def test_speak_unknown_voice_raises():
    # (A name like "no-such-voice" would resolve to Norwegian, so avoid hyphens.)
    with pytest.raises(RuntimeError, match="nosuchvoice"):
        synth.speak("hello", voice="nosuchvoice")


@pytest.mark.parametrize("engine, voice", [("espeak-ng", "en-us"), ("flite", "slt"), ("flite", "awb"),
                                           ("festival", "slt_hts"), ("festival", "kal_diphone")])
def test_every_engine_speaks_at_16k(engine, voice):
    from aura_jax.synth import speak_with

    wave = speak_with(engine, voice, "what is the capital of france")
    assert wave.dtype == np.float32 and wave.ndim == 1
    assert 1.0 < len(wave) / 16000 < 4.0 and np.abs(wave).max() > 0.05  # about two seconds of speech


def test_an_unknown_engine_or_festival_voice_is_named():
    from aura_jax.synth import speak_with

    with pytest.raises(RuntimeError, match="speech engine 'sapi'"):
        speak_with("sapi", "x", "hello")
    with pytest.raises(RuntimeError, match="festival voice 'nope'"):
        speak_with("festival", "nope", "hello")
