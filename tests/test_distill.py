"""Tests for aura_jax.distill: alignment vs torch, regrouping, losses, schedules."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from aura_jax import distill

TOL = 1e-5


def torch_align(x: np.ndarray, n: int) -> np.ndarray:
    """Independent reference: torch pool if T >= n else torch linear interp. x: [T, D]."""
    t = torch.from_numpy(np.ascontiguousarray(x.T))[None]  # [1, D, T]
    if x.shape[0] >= n:
        y = F.adaptive_avg_pool1d(t, n)
    else:
        y = F.interpolate(t, size=n, mode="linear", align_corners=False)
    return y[0].T.numpy()


def rand(shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


# --------------------------------------------------------------------------- #
# teacher_valid_frames
# --------------------------------------------------------------------------- #
def test_teacher_valid_frames_ints_and_arrays():
    cases = {0: 0, 1: 1, 2: 1, 3: 2, 2999: 1500, 3000: 1500}
    for v, want in cases.items():
        assert distill.teacher_valid_frames(v) == want
    got = distill.teacher_valid_frames(jnp.array(list(cases), jnp.int32))
    np.testing.assert_array_equal(np.asarray(got), list(cases.values()))


# --------------------------------------------------------------------------- #
# align_to_length vs torch
# --------------------------------------------------------------------------- #
ALIGN_CASES = [
    (1, 1), (1, 5), (300, 300), (299, 300), (301, 300), (1500, 300), (4500, 300),
    (7, 3), (5, 12), (3, 7), (10, 4), (13, 300),
]


@pytest.mark.parametrize("t,n", ALIGN_CASES)
@pytest.mark.parametrize("d", [1, 64])
def test_align_to_length_matches_torch(t, n, d):
    x = rand((t, d), seed=t * 31 + n)
    got = np.asarray(distill.align_to_length(jnp.asarray(x), n))
    assert got.shape == (n, d)
    np.testing.assert_allclose(got, torch_align(x, n), atol=TOL, rtol=0)


def test_alignment_weights_traced_length_matches_eager_and_torch():
    """One compiled function (static n, t_max) serves every dynamic length."""
    t_max, n, d = 40, 12, 3
    x = rand((t_max, d), seed=1)

    @jax.jit
    def aligned(length, x):
        return distill.alignment_weights(length, n, t_max) @ x

    for length in [1, 5, 11, 12, 13, 25, 40]:
        jitted = np.asarray(aligned(jnp.int32(length), jnp.asarray(x)))
        eager = np.asarray(distill.alignment_weights(length, n, t_max)) @ x
        np.testing.assert_allclose(jitted, eager, atol=1e-6, rtol=0)
        np.testing.assert_allclose(jitted, torch_align(x[:length], n), atol=TOL, rtol=0)
    assert aligned._cache_size() == 1  # no retrace per length


def torch_weights(t: int, n: int) -> np.ndarray:
    """torch's [n, t] alignment matrix: align the identity (channel c = basis e_c)."""
    return torch_align(np.eye(t, dtype=np.float32), n)


@pytest.mark.parametrize("n", [12, 300])
def test_alignment_weights_match_torch_weights(n):
    """Weight-level check, incl. torch's single-rounded interpolation coordinate.

    Near src ~ 300 a twice-rounded float32 coordinate moves lambda by ~1e-5;
    comparing the weights themselves catches that regardless of the data.
    """
    t_max = n + 5
    weights = jax.jit(distill.alignment_weights, static_argnums=(1, 2))
    for t in sorted({1, 2, n - 1, n, n + 1, t_max} | set(range(3, n, max(1, n // 20)))):
        got = np.asarray(weights(jnp.int32(t), n, t_max))
        np.testing.assert_allclose(got[:, :t], torch_weights(t, n), atol=1e-7, rtol=0, err_msg=f"T={t}")
        assert np.all(got[:, t:] == 0)


def test_alignment_weights_zero_beyond_length_and_rows_sum_to_one():
    w = np.asarray(distill.alignment_weights(jnp.int32(7), 4, 10))
    assert w.shape == (4, 10) and w.dtype == np.float32
    assert np.all(w[:, 7:] == 0)
    np.testing.assert_allclose(w.sum(1), 1.0, atol=1e-6)
    w0 = np.asarray(distill.alignment_weights(jnp.int32(0), 4, 10))
    assert np.all(w0 == 0) and np.all(np.isfinite(w0))


# --------------------------------------------------------------------------- #
# regroup_and_align vs an explicit loop
# --------------------------------------------------------------------------- #
def loop_reference(hidden, mel_valid, n):
    b, _, f_max, d = hidden.shape
    out = np.zeros((b, n, d), np.float32)
    for i in range(b):
        parts = [hidden[i, s, : min(-(-int(v) // 2), f_max)] for s, v in enumerate(mel_valid[i])]
        cat = np.concatenate(parts, axis=0)
        if cat.shape[0]:
            out[i] = torch_align(cat, n)
    return out


@pytest.mark.parametrize(
    "mel_valid,f_max,n",
    [
        # S=1: full, partial (odd mel count), tiny (T < n), text-only row.
        ([[40], [17], [3], [0]], 20, 8),
        # S=3: uneven counts, a 0-valid middle segment, T<n and T>=n, text-only row,
        # and a mel count exceeding 2*F (capped at F).
        ([[40, 13, 40], [7, 0, 22], [1, 0, 0], [0, 0, 0], [60, 2, 0]], 20, 9),
    ],
)
def test_regroup_and_align_matches_loop(mel_valid, f_max, n):
    mel_valid = np.array(mel_valid, np.int32)
    b, s = mel_valid.shape
    hidden = rand((b, s, f_max, 5), seed=s)
    want = loop_reference(hidden, mel_valid, n)
    fn = jax.jit(distill.regroup_and_align, static_argnums=2)
    got = np.asarray(fn(jnp.asarray(hidden), jnp.asarray(mel_valid), n))
    assert got.shape == (b, n, 5)
    np.testing.assert_allclose(got, want, atol=TOL, rtol=0)
    text_rows = mel_valid.sum(1) == 0
    assert text_rows.any() and np.all(got[text_rows] == 0)


def test_regroup_ignores_padded_frames():
    """Garbage in padded frames must not reach the output."""
    mel_valid = jnp.array([[6, 4]], jnp.int32)  # 3 + 2 valid of F=5
    hidden = rand((1, 2, 5, 2), seed=3)
    poisoned = hidden.copy()
    poisoned[0, 0, 3:] = 1e6
    poisoned[0, 1, 2:] = -1e6
    a = distill.regroup_and_align(jnp.asarray(hidden), mel_valid, 4)
    b = distill.regroup_and_align(jnp.asarray(poisoned), mel_valid, 4)
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


# --------------------------------------------------------------------------- #
# Losses
# --------------------------------------------------------------------------- #
def test_cosine_distance_matches_torch_and_is_safe_at_zero():
    a, b = rand((3, 4, 8), 1), rand((3, 4, 8), 2)
    got = np.asarray(distill.cosine_distance(jnp.asarray(a), jnp.asarray(b)))
    want = (1 - F.cosine_similarity(torch.from_numpy(a), torch.from_numpy(b), dim=-1)).numpy()
    np.testing.assert_allclose(got, want, atol=TOL, rtol=0)

    z = jnp.zeros(8)
    for x, y in [(z, z), (z, jnp.asarray(b[0, 0])), (jnp.asarray(a[0, 0]), z)]:
        val = distill.cosine_distance(x, y)
        assert float(val) == pytest.approx(1.0)
        ga, gb = jax.grad(lambda p, q: distill.cosine_distance(p, q), argnums=(0, 1))(x, y)
        assert np.all(np.isfinite(np.asarray(ga))) and np.all(np.isfinite(np.asarray(gb)))


@pytest.mark.parametrize("lc,lm", [(1.0, 1.0), (0.3, 2.0), (0.0, 1.0), (1.0, 0.0)])
def test_layer_distill_loss_matches_torch(lc, lm):
    p, t = rand((3, 6, 5), 4), rand((3, 6, 5), 5)
    got = np.asarray(distill.layer_distill_loss(jnp.asarray(p), jnp.asarray(t), lc, lm))
    tp, tt = torch.from_numpy(p), torch.from_numpy(t)
    want = [
        lc * (1 - F.cosine_similarity(tp[i], tt[i], dim=-1)).mean() + lm * F.mse_loss(tp[i], tt[i])
        for i in range(3)
    ]
    np.testing.assert_allclose(got, torch.stack(want).numpy(), atol=TOL, rtol=0)


def _batch(seed, k=2, b=4, n=6, d=5):
    preds = [jnp.asarray(rand((b, n, d), seed + 10 * l)) for l in range(k)]
    targets = [jnp.asarray(rand((b, n, d), seed + 10 * l + 1)) for l in range(k)]
    return preds, targets


def test_distill_loss_value_and_metrics():
    preds, targets = _batch(0, k=3)
    has_audio = jnp.array([True, False, True, True])
    loss, metrics = distill.distill_loss(preds, targets, has_audio, 0.5, 2.0)
    rows = np.array([0, 2, 3])
    tp = [torch.from_numpy(np.asarray(p)[rows]) for p in preds]
    tt = [torch.from_numpy(np.asarray(t)[rows]) for t in targets]
    cos = [(1 - F.cosine_similarity(p, t, dim=-1)).mean() for p, t in zip(tp, tt)]
    mse = [F.mse_loss(p, t) for p, t in zip(tp, tt)]
    want = sum(0.5 * c + 2.0 * m for c, m in zip(cos, mse)) / 3
    assert float(loss) == pytest.approx(float(want), abs=TOL)
    assert set(metrics) == {f"{m}_l{l}" for m in ("cos", "mse") for l in (1, 2, 3)}
    for l in range(3):
        assert float(metrics[f"cos_l{l + 1}"]) == pytest.approx(float(cos[l]), abs=TOL)
        assert float(metrics[f"mse_l{l + 1}"]) == pytest.approx(float(mse[l]), abs=TOL)


def test_distill_loss_masks_text_rows():
    preds, targets = _batch(1)
    has_audio = jnp.array([True, False, True, False])
    loss, _ = distill.distill_loss(preds, targets, has_audio)
    # Change text rows' inputs drastically (incl. zeros and inf in the prediction).
    preds2 = [p.at[1].set(1e3).at[3].set(jnp.inf) for p in preds]
    targets2 = [t.at[1].set(0.0).at[3].set(-7.0) for t in targets]
    loss2, m2 = distill.distill_loss(preds2, targets2, has_audio)
    assert float(loss2) == float(loss)
    assert all(np.isfinite(float(v)) for v in m2.values())
    # And the masked rows get zero gradient while audio rows do not.
    g = jax.grad(lambda ps: distill.distill_loss(ps, targets, has_audio)[0])(preds)
    assert np.all(np.asarray(g[0])[[1, 3]] == 0)
    assert np.any(np.asarray(g[0])[[0, 2]] != 0)


def test_distill_loss_all_text_batch_is_zero():
    preds, targets = _batch(2)
    has_audio = jnp.zeros(4, bool)
    loss, metrics = jax.jit(distill.distill_loss)(preds, targets, has_audio)
    assert float(loss) == 0.0
    assert all(float(v) == 0.0 for v in metrics.values())
    g = jax.grad(lambda ps: distill.distill_loss(ps, targets, has_audio)[0])(preds)
    assert all(np.all(np.asarray(x) == 0) for x in g)


def test_distill_loss_gradient_finite_difference_float64():
    # jax.enable_x64 is the scoped context manager in jax >= 0.9 (the old
    # jax.experimental.enable_x64 is gone); it restores float32 on exit.
    with jax.enable_x64(True):
        rng = np.random.default_rng(7)
        k, b, n, d = 2, 3, 4, 3
        preds = [jnp.asarray(rng.standard_normal((b, n, d))) for _ in range(k)]
        targets = [jnp.asarray(rng.standard_normal((b, n, d))) for _ in range(k)]
        # A zero vector in a text-only row. (In an audio row a zero pred sits at the
        # eps kink of max(|a||b|, eps), where the gradient is b/eps: finite but FD-hostile.)
        preds[0] = preds[0].at[1, 1].set(0.0)
        has_audio = jnp.array([True, False, True])
        assert preds[0].dtype == jnp.float64

        def f(ps):
            return distill.distill_loss(ps, targets, has_audio, 0.7, 1.3)[0]

        grad = jax.grad(f)(preds)
        direction = [jnp.asarray(rng.standard_normal((b, n, d))) for _ in range(k)]
        h = 1e-6
        plus = f([p + h * v for p, v in zip(preds, direction)])
        minus = f([p - h * v for p, v in zip(preds, direction)])
        fd = (plus - minus) / (2 * h)
        analytic = sum(jnp.vdot(g, v) for g, v in zip(grad, direction))
        assert abs(float(analytic)) > 1e-3  # the check is not vacuous
        assert float(fd) == pytest.approx(float(analytic), rel=1e-6, abs=1e-9)
        # Per-element check on a few coordinates, incl. the masked zero vector's.
        for idx in [(0, 0, 0, 0), (0, 2, 1, 1), (1, 2, 3, 2), (0, 1, 1, 0)]:
            l, rest = idx[0], idx[1:]
            e = [jnp.zeros_like(p) for p in preds]
            e[l] = e[l].at[rest].set(1.0)
            fd_i = (f([p + h * v for p, v in zip(preds, e)]) - f([p - h * v for p, v in zip(preds, e)])) / (2 * h)
            assert float(fd_i) == pytest.approx(float(grad[l][rest]), rel=1e-5, abs=1e-8)


# --------------------------------------------------------------------------- #
# Schedules
# --------------------------------------------------------------------------- #
@pytest.mark.parametrize(
    "spec,k,n_t,want",
    [
        ("low", 4, 32, [1, 2, 3, 4]),
        ("mid", 4, 32, [15, 16, 17, 18]),
        ("mid", 3, 32, [15, 16, 17]),
        ("high", 4, 32, [29, 30, 31, 32]),
        ("progressive", 4, 32, [8, 16, 24, 32]),
        ("progressive", 3, 32, [11, 21, 32]),
        ("progressive", 4, 6, [2, 3, 5, 6]),  # halves round up
        ("low", 1, 1, [1]),
        ([3, 1, 32, 7], 4, 32, [3, 1, 32, 7]),
        ((5, 6), 2, 8, [5, 6]),
    ],
)
def test_teacher_layer_schedule(spec, k, n_t, want):
    assert distill.teacher_layer_schedule(spec, k, n_t) == want


@pytest.mark.parametrize(
    "spec,k,n_t,match",
    [
        ("middle", 4, 32, r"distill\.teacher_layers.*low, mid, high, progressive"),
        ([1, 2, 3], 4, 32, r"distill\.teacher_layers.*3 entries.*4 student"),
        ([1, 2, 0, 4], 4, 32, r"teacher layer 0 .*1\.\.32"),
        ([1, 2, 33, 4], 4, 32, r"teacher layer 33 .*teacher depth 32"),
        ("low", 8, 6, r"teacher layer 7 .*teacher depth 6"),
        ([1.0, 2], 2, 32, r"ints"),
        (4, 4, 32, r"distill\.teacher_layers"),
    ],
)
def test_teacher_layer_schedule_errors(spec, k, n_t, match):
    with pytest.raises(ValueError, match=match):
        distill.teacher_layer_schedule(spec, k, n_t)
