"""Augmentation toward recorded speech, each transform measured independently of its code: tempo by
length, noise by the SNR it leaves, the telephone band by the spectrum, level in dB."""

import numpy as np
import pytest

from aura_jax.corpus.augment import Augment, add_noise, augment, band_limit, change_speed

SR = 16000


def tone(freq, seconds=1.0):
    t = np.arange(int(SR * seconds)) / SR
    return (0.5 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def power_at(wave, freq):
    spectrum = np.abs(np.fft.rfft(wave)) ** 2
    return spectrum[int(round(freq * len(wave) / SR))]


@pytest.mark.parametrize("factor", [0.9, 1.1])
def test_speed_changes_the_length_and_keeps_the_tone_in_proportion(factor):
    out = change_speed(tone(500), factor)
    assert abs(len(out) - SR / factor) <= 2
    # a 500 Hz tone played `factor` times faster is a 500·factor Hz tone
    peak = np.argmax(np.abs(np.fft.rfft(out))) * SR / len(out)
    assert abs(peak - 500 * factor) < 3


def test_noise_is_added_at_the_asked_signal_to_noise_ratio():
    clean = tone(300, 4.0)
    noisy = add_noise(clean, 20.0, np.random.default_rng(0))
    snr = 10 * np.log10(np.mean(clean.astype(np.float64) ** 2) / np.mean((noisy - clean).astype(np.float64) ** 2))
    assert abs(snr - 20.0) < 0.2


def test_telephone_band_keeps_speech_frequencies_and_removes_the_rest():
    for freq, kept in ((100, False), (1000, True), (6000, False)):
        ratio = power_at(band_limit(tone(freq)), freq) / power_at(tone(freq), freq)
        assert (ratio > 0.8) if kept else (ratio < 0.01), (freq, ratio)


def test_no_augmentation_leaves_the_clip_alone():
    wave = tone(440) * 0.9
    out, done = augment(wave, Augment.none(), np.random.default_rng(0))
    assert done == {} and np.array_equal(out, wave)


def test_augmentation_is_a_function_of_the_seed_and_reports_what_it_did():
    wave = tone(440, 2.0)
    always = Augment(speed_p=1.0, noise_p=1.0, band_p=1.0, gain_db=(-6.0, -6.0))
    a, done = augment(wave, always, np.random.default_rng(3))
    b, _ = augment(wave, always, np.random.default_rng(3))
    assert np.array_equal(a, b) and set(done) == {"speed", "band", "snr_db", "gain_db"}
    assert abs(len(a) - len(wave) / done["speed"]) <= 2 and np.abs(a).max() <= 1.0
    gain_only, g = augment(wave, Augment(speed_p=0.0, noise_p=0.0, band_p=0.0, gain_db=(-6.0, -6.0)),
                           np.random.default_rng(0))
    assert g == {"gain_db": -6.0} and np.allclose(gain_only, wave * 10 ** (-6 / 20), atol=1e-7)
