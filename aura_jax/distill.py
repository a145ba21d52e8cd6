"""Layer-wise distillation: teacher-frame alignment, losses and layer schedules.

SPEC §3–4. The teacher (a frozen Whisper encoder) produces frames at half the
mel rate, per 30 s segment; the student produces ``n`` audio tokens per sample.
This module

* turns a padded ``[B, S, F, D]`` stack of teacher hidden states into one
  ``[B, n, D]`` target per sample (drop padded frames, concatenate segments,
  align to ``n`` with PyTorch ``adaptive_avg_pool1d`` / ``interpolate`` semantics),
* computes the cosine + MSE distillation loss, masked to rows that have audio,
* maps schedule names (low / mid / high / progressive) to teacher layers.

Everything numeric is pure ``jax.numpy`` with static shapes; the valid lengths
may be traced values, so one compiled function serves every batch. Alignment is
expressed as a dense weight matrix built from iota comparisons (no gathers, no
data-dependent shapes) and applied with a float32-exact matmul.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

# f32 matmuls on GPU/TPU default to TF32/bf16 passes; alignment must match torch.
_EXACT = jax.lax.Precision.HIGHEST

SCHEDULES = ("low", "mid", "high", "progressive")


# --------------------------------------------------------------------------- #
# Valid lengths
# --------------------------------------------------------------------------- #
def teacher_valid_frames(mel_valid_frames):
    """Valid teacher frames for ``v`` valid mel frames: ``ceil(v / 2)``.

    Whisper's conv stem (second conv has stride 2) halves the frame rate.
    Works on Python ints and on (traced) integer arrays alike.
    """
    # -(-v // 2) is ceil(v/2) for ints and integer arrays without float casts.
    return -((-mel_valid_frames) // 2)


# --------------------------------------------------------------------------- #
# Alignment weights
# --------------------------------------------------------------------------- #
def _pool_weights(pos, length, n: int, dtype):
    """Adaptive-average-pool weights ``[n, *pos.shape]`` (torch semantics).

    Output ``i`` averages input ``[floor(i*T/n), ceil((i+1)*T/n))``, T = length.
    Integer arithmetic, exactly like torch's ``start_index`` / ``end_index``.
    """
    i = jnp.arange(n, dtype=jnp.int32).reshape((n,) + (1,) * pos.ndim)
    start = (i * length) // n
    end = ((i + 1) * length + n - 1) // n
    inside = (pos >= start) & (pos < end)
    # max(.,1) only guards the unselected branch when length == 0 (no 0/0 NaN).
    count = jnp.maximum(end - start, 1).astype(dtype)
    return inside.astype(dtype) / count


@functools.lru_cache(maxsize=None)
def _interp_src_table(n: int) -> np.ndarray:
    """``[n, n]`` float32: row ``T`` holds torch's source coordinate of each output.

    torch's CPU kernel (checked against torch 2.13 weights; nvcc also fuses
    by default) evaluates ``scale * (i + 0.5) - 0.5`` as a fused
    multiply-add, i.e. rounded to float32 *once*. Plain float32
    in XLA rounds twice on CPU (and may or may not fuse on GPU), which moves
    lambda by up to an ulp of ``src`` (~3e-5 near src=300) and the output by
    more than 1e-5. So we tabulate on the host: float64 of the float32 scale
    times (i + 0.5), minus 0.5, is exact here, and one cast rounds it once.
    Row 0 (T = 0) is unused. Only ``T < n`` needs it, so ``n`` rows suffice.
    """
    t = np.arange(n, dtype=np.float32)[:, None]
    scale = (t / np.float32(n)).astype(np.float64)  # float32 scale, like torch
    src = scale * (np.arange(n, dtype=np.float64) + 0.5) - 0.5
    return np.maximum(src, 0.0).astype(np.float32)


def _interp_weights(pos, length, n: int, dtype):
    """Linear-interpolation weights ``[n, *pos.shape]`` (torch semantics).

    torch ``F.interpolate(mode="linear", align_corners=False)`` with ``size=n``
    (no ``scale_factor``) uses ``scale = float32(T / n)``, then
    ``src = max(scale * (i + 0.5) - 0.5, 0)``, ``i0 = floor(src)``,
    ``i1 = min(i0 + 1, T - 1)``, ``lambda = src - i0``;
    output ``i = (1 - lambda) * x[i0] + lambda * x[i1]``.
    """
    # Select row T of the constant table by comparison (no gather; vmaps cleanly).
    rows = jnp.arange(n, dtype=jnp.int32)[:, None]
    src = jnp.where(rows == length, _interp_src_table(n), 0.0).sum(axis=0)  # [n]
    src = src.reshape((n,) + (1,) * pos.ndim)
    i0 = jnp.floor(src).astype(jnp.int32)
    lam = (src - i0.astype(jnp.float32)).astype(dtype)  # exact: src - floor(src)
    i1 = jnp.minimum(i0 + 1, length - 1)
    # When i0 == i1 (last frame) both terms hit the same position and sum to 1,
    # exactly like torch's (1 - lambda) * x[i0] + lambda * x[i0].
    return (1 - lam) * (pos == i0).astype(dtype) + lam * (pos == i1).astype(dtype)


def position_weights(pos, length, n: int, dtype=jnp.float32):
    """Alignment weights evaluated at arbitrary frame-index arrays.

    Args:
      pos: integer array (any shape) of time indices into the concatenated
        teacher sequence.
      length: total valid teacher frames T (int or traced int scalar).
      n: number of output positions (static).
    Returns:
      ``[n, *pos.shape]``: weight of the frame at ``pos`` in output ``i``.
      Pooling when ``T >= n``, interpolation when ``T < n``; zero for
      ``pos >= T`` (and everything is zero when ``T == 0``).
    """
    pos = jnp.asarray(pos, jnp.int32)
    length = jnp.asarray(length, jnp.int32)
    # Both branches are computed so that length can be traced.
    w = jnp.where(
        length >= n,
        _pool_weights(pos, length, n, dtype),
        _interp_weights(pos, length, n, dtype),
    )
    valid = (pos >= 0) & (pos < length)
    return jnp.where(valid, w, jnp.zeros((), dtype))


def alignment_weights(length, n: int, t_max: int, dtype=jnp.float32):
    """``[n, t_max]`` matrix aligning the first ``length`` of ``t_max`` frames to ``n``.

    ``length`` may be a traced int scalar; ``n`` and ``t_max`` are static.
    Columns ``>= length`` are zero, so padded frames never leak in.
    """
    return position_weights(jnp.arange(t_max, dtype=jnp.int32), length, n, dtype)


def align_to_length(x, n: int):
    """Align ``x: [T, D]`` to ``[n, D]`` (adaptive avg pool if T >= n, else linear interp)."""
    t = x.shape[0]
    w = alignment_weights(t, n, t, dtype=jnp.promote_types(x.dtype, jnp.float32))
    return jnp.matmul(w, x, precision=_EXACT)


def regroup_and_align(hidden, mel_valid_frames, n: int):
    """Per-sample teacher target: concatenate valid frames of all segments, align to ``n``.

    Args:
      hidden: ``[B, S, F, D]`` teacher hidden states of one layer; segment ``s``
        of sample ``b`` occupies ``hidden[b, s]`` with its valid frames first.
      mel_valid_frames: ``[B, S]`` int, valid mel frames per segment (0 for an
        absent segment / text-only row).
      n: student audio tokens per sample (static).
    Returns:
      ``[B, n, D]``; rows with no valid frame at all are exactly zero.

    No gather: each (s, f) gets its global time index
    ``offset_s + f`` (offset = exclusive cumsum of valid counts), the alignment
    weights are evaluated at those indices, padded frames are zeroed, and a
    single einsum contracts over (s, f).
    """
    _, _, f_max, _ = hidden.shape
    valid = jnp.minimum(teacher_valid_frames(jnp.asarray(mel_valid_frames, jnp.int32)), f_max)
    offsets = jnp.cumsum(valid, axis=1) - valid  # exclusive cumsum over segments
    f = jnp.arange(f_max, dtype=jnp.int32)
    pos = offsets[:, :, None] + f  # [B, S, F] global time index
    in_segment = f < valid[:, :, None]  # a padded frame's index may alias the next segment
    total = valid.sum(axis=1)  # [B] T per sample

    dtype = jnp.promote_types(hidden.dtype, jnp.float32)
    w = jax.vmap(lambda p, t: position_weights(p, t, n, dtype))(pos, total)  # [B, n, S, F]
    w = jnp.where(in_segment[:, None], w, jnp.zeros((), dtype))
    return jnp.einsum("bnsf,bsfd->bnd", w, hidden.astype(dtype), precision=_EXACT)


# --------------------------------------------------------------------------- #
# Losses
# --------------------------------------------------------------------------- #
def cosine_distance(a, b, eps: float = 1e-8):
    """``1 - <a, b> / max(|a| |b|, eps)`` along the last axis.

    Written as ``sqrt(max(|a|^2 |b|^2, eps^2))`` so no ``sqrt(0)`` is ever
    differentiated: value and gradient stay finite for zero vectors.
    """
    dot = jnp.sum(a * b, axis=-1)
    sq = jnp.sum(a * a, axis=-1) * jnp.sum(b * b, axis=-1)
    return 1.0 - dot / jnp.sqrt(jnp.maximum(sq, eps * eps))


def _layer_terms(pred, target):
    """Per-sample (mean cosine distance, mean squared error), each ``[B]``."""
    cos = jnp.mean(cosine_distance(pred, target), axis=-1)
    mse = jnp.mean(jnp.square(pred - target), axis=(-2, -1))
    return cos, mse


def layer_distill_loss(pred, target, lambda_cos: float, lambda_mse: float):
    """Per-sample loss ``[B]`` of one layer (SPEC §4).

    ``lambda_cos * mean_i(1 - cos(pred_i, target_i)) + lambda_mse * mean_ij (pred - target)^2``
    for ``pred, target: [B, n, D]``.
    """
    cos, mse = _layer_terms(pred, target)
    return lambda_cos * cos + lambda_mse * mse


def _masked_mean(values, mask, count=None):
    """Mean of ``values [B]`` over rows where ``mask``; 0.0 when no row is set.

    ``count`` replaces ``mask.sum()`` as the denominator (gradient accumulation: a micro-batch
    divides by the whole batch's count, so the micro-batch terms add up to the batch mean).
    ``where`` (not a multiply) so a NaN/inf in a masked row cannot leak in.
    """
    kept = jnp.where(mask, values, jnp.zeros_like(values))
    count = mask.sum() if count is None else count
    return kept.sum() / jnp.maximum(count, 1).astype(values.dtype)


def distill_loss(preds, targets, has_audio, lambda_cos: float = 1.0, lambda_mse: float = 1.0, num_rows=None):
    """Total distillation loss ``(1/K) sum_l L_l`` averaged over audio rows.

    Args:
      preds, targets: length-K lists of ``[B, n, D_l]`` (head outputs, aligned
        teacher states); layer ``l`` of the lists is student layer ``l + 1``.
      has_audio: ``[B]`` bool; text-only rows contribute exactly 0, and a batch
        without audio rows gives 0.0.
      num_rows: the denominator of the average (default: audio rows of this batch; gradient
        accumulation passes the whole batch's count to each micro-batch).
    Returns:
      ``(loss, metrics)``; ``metrics`` holds ``cos_l{l}`` / ``mse_l{l}``
      (unweighted, averaged over audio rows, ``l`` 1-based student layer).
    """
    if len(preds) != len(targets) or not preds:
        raise ValueError(f"need matching non-empty preds/targets, got {len(preds)} and {len(targets)}")
    mask = jnp.asarray(has_audio, bool)
    per_row = 0.0
    metrics = {}
    for l, (pred, target) in enumerate(zip(preds, targets), start=1):
        cos, mse = _layer_terms(pred, target)
        per_row = per_row + lambda_cos * cos + lambda_mse * mse
        metrics[f"cos_l{l}"] = _masked_mean(cos, mask, num_rows)
        metrics[f"mse_l{l}"] = _masked_mean(mse, mask, num_rows)
    loss = _masked_mean(per_row / len(preds), mask, num_rows)
    return loss, metrics


# --------------------------------------------------------------------------- #
# Teacher-layer schedules
# --------------------------------------------------------------------------- #
def teacher_layer_schedule(spec, num_student_layers: int, num_teacher_layers: int) -> list[int]:
    """Teacher layer t(l) for each student layer l = 1..K (1-based, K = num_student_layers).

    Layer ``t`` means teacher ``hidden_states[t]`` = output of encoder layer
    ``t`` (``hidden_states[0]`` is the embedding output, never used). The paper
    names the schedules but not their layers; these are OUR definitions
    (N = num_teacher_layers):

    * ``"low"``: t(l) = l, i.e. ``[1, 2, ..., K]`` (the paper's default,
      "low-level one-to-one").
    * ``"mid"``: K consecutive layers centred in the stack, starting at
      ``(N - K) // 2 + 1``.
    * ``"high"``: the last K layers, ``N - K + 1 .. N``.
    * ``"progressive"``: evenly spaced up to the top,
      t(l) = round(l * N / K) with halves rounded up (e.g. N=32, K=4 ->
      ``[8, 16, 24, 32]``).
    * an explicit sequence of K ints.

    Raises ValueError for an unknown name, a wrong-length list, or a layer
    outside ``1..N``.
    """
    k, n_t = int(num_student_layers), int(num_teacher_layers)
    if k < 1 or n_t < 1:
        raise ValueError(f"need >= 1 student and teacher layers, got K={k}, teacher depth={n_t}")
    if isinstance(spec, str):
        if spec == "low":
            layers = list(range(1, k + 1))
        elif spec == "mid":
            start = (n_t - k) // 2 + 1
            layers = list(range(start, start + k))
        elif spec == "high":
            layers = list(range(n_t - k + 1, n_t + 1))
        elif spec == "progressive":
            # Integer round-half-up of l*N/K (Python's round() is banker's).
            layers = [(2 * l * n_t + k) // (2 * k) for l in range(1, k + 1)]
        else:
            raise ValueError(
                f"distill.teacher_layers={spec!r} is not a known schedule; "
                f"allowed: {', '.join(SCHEDULES)} or a list of {k} teacher layer numbers"
            )
    elif isinstance(spec, Sequence):
        if any(isinstance(t, bool) or not isinstance(t, int) for t in spec):
            raise ValueError(f"distill.teacher_layers list must hold ints, got {list(spec)!r}")
        layers = [int(t) for t in spec]
        if len(layers) != k:
            raise ValueError(
                f"distill.teacher_layers has {len(layers)} entries but there are {k} student layers"
            )
    else:
        raise ValueError(
            f"distill.teacher_layers={spec!r} must be one of {', '.join(SCHEDULES)} or a list of ints"
        )
    for t in layers:
        if not 1 <= t <= n_t:
            raise ValueError(
                f"distill.teacher_layers: teacher layer {t} (schedule {spec!r}, K={k}) is "
                f"outside 1..{n_t} (teacher depth {n_t})"
            )
    return layers
