"""The AuRA objective: L = ce_weight·CE + β·(1/K) Σ_l [λ_cos(1 − cos) + λ_mse·MSE]."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from aura_jax import distill


def cross_entropy(logits: jax.Array, targets: jax.Array, loss_mask: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Next-token CE: logits at j predict targets at j+1 where loss_mask[j+1]. Returns (mean, count)."""
    logits = logits[:, :-1].astype(jnp.float32)
    targets, mask = targets[:, 1:], loss_mask[:, 1:].astype(jnp.float32)
    logz = jax.nn.logsumexp(logits, axis=-1)
    picked = jnp.take_along_axis(logits, targets[..., None], axis=-1)[..., 0]
    count = mask.sum()
    return jnp.sum((logz - picked) * mask) / jnp.maximum(count, 1.0), count


def aura_loss(model, batch: dict) -> tuple[jax.Array, dict]:
    """Total loss and its terms for one batch.

    batch: input_ids, attention_mask, loss_mask [B, T]; audio_features [B, mel, L];
    teacher_features [B, S, mel, 3000] and teacher_valid_frames [B, S] (optional when
    the student sees the full 30 s window: then the teacher reuses audio_features
    with audio_valid_frames [B]).
    """
    cfg = model.config.loss
    out = model.student(batch["input_ids"], batch["attention_mask"], batch["loss_mask"], batch["audio_features"])
    ce, n_targets = cross_entropy(out.logits, out.spliced.targets, out.spliced.loss_mask)
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
        d, per_layer = distill.distill_loss(preds, targets, out.spliced.has_audio, cfg.lambda_cos, cfg.lambda_mse)
        loss = loss + cfg.distill_weight * d
        metrics.update(distill=d, **per_layer)
    else:
        metrics["distill"] = jnp.zeros(())
    metrics["loss"] = loss
    return loss, metrics
