"""Speaker perturbation (config `perturb`, aura_jax/data/perturb.py): VTLP, pitch shift and SpecAugment,
drawn per (seed, step, row), so a resumed run draws what the straight run drew; the teacher's features
are cut from the same perturbed clip as the student's."""

import numpy as np
import pytest

from aura_jax.audio import SAMPLING_RATE, log_mel_segments, mel_filters, num_valid_frames, vtlp_filters
from aura_jax.config import ConfigError, PerturbConfig, load_config
from aura_jax.data import perturb
from aura_jax.data.examples import BatchMaker, Example
from aura_jax.data.sources import AudioRef
from aura_jax.synth import synthetic_signal

ON = PerturbConfig(vtlp=0.1, pitch_semitones=2.0, freq_masks=2, freq_width=8, time_masks=2, time_width=20)


def tone(hz, seconds=1.0):
    t = np.arange(int(seconds * SAMPLING_RATE)) / SAMPLING_RATE
    return (0.5 * np.sin(2 * np.pi * hz * t)).astype(np.float32)


def band_energy(wave, filters=None):
    feats, valid = log_mel_segments(wave, SAMPLING_RATE, 80, filters=filters)
    return feats[0, :, 10:int(valid[0]) - 10].mean(axis=1)


def test_vtlp_at_alpha_one_is_the_plain_bank_and_a_warp_hears_a_tone_where_the_plain_bank_hears_alpha_times_it():
    assert vtlp_filters(80, 1.0) is mel_filters(80)
    for alpha in (0.9, 1.1):
        warped = band_energy(tone(1000.0), vtlp_filters(80, alpha))
        moved = band_energy(tone(1000.0 * alpha))  # the reference: the tone itself moved, the plain bank
        assert np.argmax(warped) == np.argmax(moved) != np.argmax(band_energy(tone(1000.0)))
        power = lambda x: 10.0 ** (4.0 * x - 4.0)  # the features back to mel power (Whisper's scaling undone)
        assert np.corrcoef(power(warped), power(moved))[0, 1] > 0.97
    bank = vtlp_filters(80, 1.1)
    assert bank.shape == mel_filters(80).shape and np.all(bank >= 0)


def test_pitch_shift_moves_the_pitch_and_keeps_the_length():
    wave = tone(220.0)
    up = perturb.shift_pitch(wave, 12.0)
    spectrum = np.abs(np.fft.rfft(up))
    assert len(up) == len(wave) and abs(np.argmax(spectrum) * SAMPLING_RATE / len(up) - 440.0) < 3.0
    assert perturb.shift_pitch(wave, 0.0) is wave


def test_spec_augment_masks_bands_and_heard_spans_only():
    rng = np.random.default_rng(0)
    feats = rng.standard_normal((1, 80, 3000)).astype(np.float32)
    valid = np.array([400])
    out = perturb.spec_augment(feats, valid, PerturbConfig(freq_masks=2, freq_width=8, time_masks=3, time_width=30),
                               seed=5)
    changed = out != feats
    assert changed.any() and not changed[:, :, 400:][:, ~changed[0, :, 400:].all(axis=1)].any()
    bands = np.flatnonzero(changed[0, :, 400:].all(axis=1))  # frequency masks cover padding too
    assert 0 < len(bands) <= 16
    spans = np.flatnonzero(changed[0][np.setdiff1d(np.arange(80), bands)].all(axis=0))
    assert 0 < len(spans) <= 90 and spans.max() < 400
    assert np.allclose(out[changed], out[changed][0])  # one value: the heard features' mean
    np.testing.assert_array_equal(perturb.spec_augment(feats, valid, PerturbConfig(), seed=5), feats)


def make_examples(n=3, seconds=2.0):
    out = []
    for i in range(n):
        wave = synthetic_signal(seconds, seed=i)
        out.append(Example(f"r{i}", "speech", np.arange(5, 12, dtype=np.int32), np.array([0] * 4 + [1] * 3, bool),
                           f"row {i}", audio=AudioRef(f"k{i}", f"clip {i}", array=wave),
                           frames=num_valid_frames(len(wave)), samples=len(wave)))
    return out


def test_draws_depend_on_step_and_row_only_so_a_resume_builds_the_same_batches():
    examples = make_examples()
    make = BatchMaker(examples, n_mels=80, text_bucket=8, teacher_segments=1, pad_id=0, perturb=ON, seed=3)
    plain = BatchMaker(examples, n_mels=80, text_bucket=8, teacher_segments=1, pad_id=0)
    entry = (300, np.arange(3))
    later = make(entry, step=7)
    fresh = BatchMaker(examples, n_mels=80, text_bucket=8, teacher_segments=1, pad_id=0, perturb=ON, seed=3)
    make(entry, step=2)  # another step first: no shared stream to advance
    for k, v in fresh(entry, step=7).items():
        np.testing.assert_array_equal(v, later[k], err_msg=k)
    other = make(entry, step=8)["audio_features"]
    base = plain(entry)["audio_features"]
    assert not np.array_equal(other, later["audio_features"]) and not np.array_equal(base, later["audio_features"])
    seeded = BatchMaker(examples, n_mels=80, text_bucket=8, teacher_segments=1, pad_id=0, perturb=ON, seed=4)
    assert not np.array_equal(seeded(entry, step=7)["audio_features"], later["audio_features"])
    with pytest.raises(ValueError, match="pass the entry's step"):
        make(entry)


def test_the_teacher_hears_the_same_perturbed_clip():
    make = BatchMaker(make_examples(), n_mels=80, text_bucket=8, teacher_segments=1, pad_id=0, perturb=ON, seed=0,
                      teacher_frames=3000)
    batch = make((300, np.arange(3)), step=1)
    np.testing.assert_array_equal(batch["audio_features"], batch["teacher_features"][:, 0, :, :300])


def test_the_pipeline_s_iterator_draws_by_the_plan_index(tmp_path):
    """grain's dataset maps each plan entry with its index: the iterator's batch s is `batch(s)`."""
    from aura_jax.data.pipeline import TrainData

    class Tok:
        pad_token_id = 0

    data = TrainData.__new__(TrainData)
    data.plan = [(300, np.arange(3)), (300, np.array([2, 0, 1]))]
    data.make_batch = BatchMaker(make_examples(), n_mels=80, text_bucket=8, teacher_segments=1, pad_id=0,
                                 perturb=ON, seed=0)
    data.config = load_config(None, ["data.prefetch_batches=1", "data.worker_threads=1"])
    got = list(data.iterator())
    for step, batch in enumerate(got):
        np.testing.assert_array_equal(batch["audio_features"], data.batch(step)["audio_features"])


@pytest.mark.parametrize("override, message", [("perturb.vtlp=0.6", "perturb.vtlp=0.6"),
                                                ("perturb.pitch_semitones=-1", "perturb.pitch_semitones"),
                                                ("perturb.time_masks=-2", "perturb.time_masks"),
                                                ("perturb.freq_width=128", "perturb.freq_width=128")])
def test_bad_perturbation_settings_are_one_error_naming_them(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config(None, [override])


def test_off_by_default():
    assert not load_config(None, []).perturb.active
    assert ON.active and PerturbConfig(time_masks=2).active is False  # a mask of width 0 is no mask
