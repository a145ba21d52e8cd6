"""The AuRA objective: L = ce_weight·CE + β·(1/K) Σ_l [λ_cos(1 − cos) + λ_mse·MSE]."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from aura_jax import distill


def cross_entropy(logits: jax.Array, targets: jax.Array, loss_mask: jax.Array,
                  denominator=None) -> tuple[jax.Array, jax.Array]:
    """Next-token CE: logits at j predict targets at j+1 where loss_mask[j+1]. Returns (mean, count).
    `denominator` replaces this batch's count in the mean (gradient accumulation)."""
    return next_token_cross_entropy(logits[:, :-1], targets[:, 1:], loss_mask[:, 1:], denominator)


def next_token_cross_entropy(logits: jax.Array, next_targets: jax.Array, next_mask: jax.Array,
                             denominator=None) -> tuple[jax.Array, jax.Array]:
    """CE with the shift already applied: logits[:, j] predict next_targets[:, j] where next_mask."""
    logits = logits.astype(jnp.float32)
    targets, mask = next_targets, next_mask.astype(jnp.float32)
    logz = jax.nn.logsumexp(logits, axis=-1)
    picked = jnp.take_along_axis(logits, targets[..., None], axis=-1)[..., 0]
    count = mask.sum()
    denominator = count if denominator is None else denominator
    return jnp.sum((logz - picked) * mask) / jnp.maximum(denominator, 1.0), count


def loss_normalizers(batch: dict, placeholder_id: int, patch_frames: int) -> dict:
    """The denominators of a batch's two means: CE target tokens and audio rows, counted after the
    splice exactly as `aura_loss` counts them (the splice of the masks alone, 1-wide embeddings).
    Gradient accumulation computes them on the whole batch and hands them to every micro-batch,
    so the micro-batch losses add up to the whole batch's loss."""
    from aura_jax.models.aura import splice_audio

    ids = batch["input_ids"]
    b, t = ids.shape
    n = batch["audio_features"].shape[-1] // patch_frames
    spliced = splice_audio(jnp.zeros((b, t, 1)), ids, batch["attention_mask"], batch["loss_mask"],
                           jnp.zeros((b, n, 1)), placeholder_id)
    return {"target_tokens": spliced.loss_mask[:, 1:].sum().astype(jnp.float32),
            "audio_rows": spliced.has_audio.sum().astype(jnp.float32)}


def student_cross_entropy(model, batch: dict, denominator=None):
    """(student output, CE, target count), with logits computed only where the CE needs them."""
    out = model.student(batch["input_ids"], batch["attention_mask"], batch["loss_mask"], batch["audio_features"],
                        all_logits=False)
    return (out, *next_token_cross_entropy(out.logits, out.next_targets, out.next_mask, denominator))


def aura_loss(model, batch: dict, normalizers: dict | None = None) -> tuple[jax.Array, dict]:
    """Total loss and its terms for one batch.

    batch: input_ids, attention_mask, loss_mask [B, T]; audio_features [B, mel, L];
    teacher_features [B, S, mel, 3000] and teacher_valid_frames [B, S] (optional when
    the student sees the full 30 s window: then the teacher reuses audio_features
    with audio_valid_frames [B]).
    normalizers: `loss_normalizers` of the whole batch when `batch` is one micro-batch of it
    (default: this batch's own counts).
    """
    norm = normalizers or {}
    cfg = model.config.loss
    out, ce, n_targets = student_cross_entropy(model, batch, norm.get("target_tokens"))
    metrics = {"ce": ce, "target_tokens": n_targets}
    loss = cfg.ce_weight * ce
    if cfg.distill_weight > 0 and model.teacher is not None:
        features = batch.get("teacher_features")
        valid = batch.get("teacher_valid_frames")
        if features is None:
            features, valid = batch["audio_features"][:, None], batch["audio_valid_frames"][:, None]
        n = out.audio_states[0].shape[1]
        targets = model.teacher_targets(features, valid, n)
        preds = model.distill_predictions(out.audio_states)
        d, per_layer = distill.distill_loss(preds, targets, out.spliced.has_audio, cfg.lambda_cos, cfg.lambda_mse,
                                            norm.get("audio_rows"))
        loss = loss + cfg.distill_weight * d
        metrics.update(distill=d, **per_layer)
    else:
        metrics["distill"] = jnp.zeros(())
    metrics["loss"] = loss
    return loss, metrics
