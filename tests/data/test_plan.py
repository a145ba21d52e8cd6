"""The plan: mixing, shuffling, buckets, remainders, epochs, steps (no audio needed)."""

import collections

import numpy as np
import pytest

from aura_jax.data.plan import Plan, bucket_of


def plan(n_speech=10, n_text=6, frames=None, **kw):
    is_speech = np.array([True] * n_speech + [False] * n_text)
    frames = np.array(frames if frames is not None else [300] * n_speech + [0] * n_text)
    kw = {"batch_size": 4, "buckets": [500, 1000, 3000], **kw}
    return Plan(is_speech, frames, **kw)


def all_rows(p, steps=None):
    return np.concatenate([p[g][1] for g in range(steps or len(p))])


def test_bucket_of():
    frames = np.array([1, 500, 501, 1000, 2999, 3000, 0, 0])
    speech = np.array([True] * 6 + [False, False])
    assert bucket_of(frames, speech, [3000, 500, 1000]).tolist() == [500, 500, 1000, 1000, 3000, 3000, 500, 500]
    # No bucket fits: the largest (the student sees a truncated clip).
    assert bucket_of(np.array([2000]), np.array([True]), [500, 1000]).tolist() == [1000]


def test_batches_are_bucket_homogeneous_and_remainders_dropped():
    frames = [300] * 5 + [800] * 6 + [2500] * 3 + [0] * 4
    p = plan(14, 4, frames, epochs=1)
    # bucket 500: 5 speech + 4 text = 9 → 2 batches, 1 dropped; 1000: 6 → 1, 2 dropped; 3000: 3 → 0, 3 dropped.
    assert (p.batches_per_epoch, p.dropped_per_epoch, len(p)) == (3, 6, 3)
    for g in range(len(p)):
        L, rows = p[g]
        assert len(rows) == 4 and set(p.bucket[rows]) == {L}
        assert all(frames[r] <= L for r in rows)
    assert len(set(all_rows(p).tolist())) == 12  # no row twice within an epoch


def test_shuffle_is_seeded_and_each_epoch_uses_every_row_once():
    a, b, c = plan(16, 8, epochs=3, seed=1), plan(16, 8, epochs=3, seed=1), plan(16, 8, epochs=3, seed=2)
    assert len(a) == 18
    np.testing.assert_array_equal(all_rows(a), all_rows(b))
    assert not np.array_equal(all_rows(a), all_rows(c))
    epochs = all_rows(a).reshape(3, 24)
    assert all(sorted(e) == list(range(24)) for e in epochs)
    assert not np.array_equal(epochs[0], epochs[1])  # a new permutation each epoch
    fixed = plan(16, 8, epochs=2, shuffle=False)
    np.testing.assert_array_equal(all_rows(fixed), np.tile(np.arange(24), 2))


def test_steps_override_epochs_and_span_epochs():
    p = plan(16, 8, epochs=1.5)
    assert p.batches_per_epoch == 6 and len(p) == 9
    q = plan(16, 8, steps=14)
    assert len(q) == 14 and q.epoch(2)[1][1].tolist() == q[13][1].tolist()
    with pytest.raises(IndexError):
        q[14]


@pytest.mark.parametrize("fraction, text_per_epoch", [(0.5, 16), (0.8, 4), (0.2, 64), (1.0, 0)])
def test_speech_fraction_subsamples_or_cycles_text(fraction, text_per_epoch):
    p = plan(16, 8, batch_size=4, speech_fraction=fraction, epochs=4)
    assert p.text_per_epoch == text_per_epoch
    rows = all_rows(p).reshape(4, -1)
    for e in rows:
        speech, text = (e < 16).sum(), (e >= 16).sum()
        assert speech == 16 and text == text_per_epoch
        np.testing.assert_allclose(speech / len(e), fraction)
        if text_per_epoch >= 8:  # cycling: every text row equally often
            assert set(collections.Counter(e[e >= 16].tolist()).values()) == {text_per_epoch // 8}
    if text_per_epoch == 4:  # subsampling: successive epochs walk through the whole text pool
        assert sorted(rows[:2][rows[:2] >= 16].tolist()) == list(range(16, 24))


def test_speech_fraction_zero_is_text_only_and_errors():
    p = plan(16, 8, speech_fraction=0.0, epochs=1)
    assert (all_rows(p) >= 16).all() and len(p) == 2
    with pytest.raises(ValueError, match="no speech rows"):
        plan(0, 8, speech_fraction=0.5)
    with pytest.raises(ValueError, match="needs text rows"):
        plan(8, 0, speech_fraction=0.5)
    with pytest.raises(ValueError, match="no full batch"):
        plan(2, 1, batch_size=4)
