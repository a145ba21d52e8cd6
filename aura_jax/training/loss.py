"""The AuRA objective: L = ce_weight·CE + β·(1/K) Σ_l [λ_cos(1 − cos) + λ_mse·MSE]
(+ ctc_weight·CTC and text_teacher_weight·KL, opt-in extensions that are not the paper's: `audio_ctc`,
`text_teacher_kl`)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

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
    """The denominators of a batch's means: CE target tokens, audio rows and CTC labels, counted after the
    splice exactly as `aura_loss` counts them (the splice of the masks alone, 1-wide embeddings).
    Gradient accumulation computes them on the whole batch and hands them to every micro-batch,
    so the micro-batch losses add up to the whole batch's loss."""
    from aura_jax.models.aura import splice_audio

    ids = batch["input_ids"]
    b, t = ids.shape
    n = batch["audio_features"].shape[-1] // patch_frames
    spliced = splice_audio(jnp.zeros((b, t, 1)), ids, batch["attention_mask"], batch["loss_mask"],
                           jnp.zeros((b, n, 1)), placeholder_id)
    next_mask = spliced.loss_mask[:, 1:]
    norms = {"target_tokens": next_mask.sum().astype(jnp.float32),
             "audio_rows": spliced.has_audio.sum().astype(jnp.float32),
             "ctc_label_tokens": ctc_label_lengths(next_mask, spliced.has_audio).sum().astype(jnp.float32)}
    if "text_teacher_loss_mask" in batch:
        norms["text_teacher_tokens"] = batch["text_teacher_loss_mask"][:, 1:].sum().astype(jnp.float32)
    return norms


def ctc_label_lengths(next_mask: jax.Array, has_audio: jax.Array) -> jax.Array:
    """[batch] CTC label lengths: a row's CE targets less its last one, 0 for rows without audio.

    Every audio row is an ASR row (data/sources.py `asr_messages`: one assistant turn, the
    transcript), and its targets are the transcript then the end-of-turn token
    (tokenizer.py `conversation_ids` ends a target turn at EOS; tools/smoke.py's batch too). That
    last token is not heard, so it is not a label."""
    return jnp.where(has_audio, jnp.maximum(next_mask.sum(axis=1) - 1, 0), 0)


def ctc_labels(next_targets: jax.Array, next_mask: jax.Array, has_audio: jax.Array):
    """(labels [batch, X], label_paddings [batch, X] float): each row's CE targets in order, less
    the end-of-turn token (`ctc_label_lengths`), right-padded as optax wants (the padding's value is
    ignored; -1 shows it is no token)."""
    order, _ = targets_in_order(next_mask, next_mask.shape[1])  # targets first, in their order in the row
    labels = jnp.take_along_axis(next_targets, order, axis=1)
    padded = jnp.arange(labels.shape[1])[None, :] >= ctc_label_lengths(next_mask, has_audio)[:, None]
    return jnp.where(padded, -1, labels), padded.astype(jnp.float32)


def audio_ctc(model, out, denominator=None) -> tuple[jax.Array, jax.Array]:
    """Soundwave's auxiliary CTC (arXiv 2502.12900), on the last adapted layer's audio states read out
    through the frozen LLM's own norm and LM head (`AuraModel.audio_vocab_logits`): a dense,
    per-audio-token signal that the states there already spell the transcript in the LLM's vocabulary.
    Returns (Σ per-row CTC over the audio rows / Σ their label lengths, label count), per label token
    like the CE; `denominator` replaces the count (gradient accumulation, `loss_normalizers`).

    Blank: the audio placeholder id, which never occurs in a transcript. Every one of the N audio
    tokens is a CTC frame (100 ms at patch_frames=10; the silence padding of a short clip is
    blanks). A transcript that cannot fit (N < labels + repeats) gets optax's huge finite value
    (≈ −log_epsilon = 1e5) rather than inf: such a batch shows as a CTC spike, not a NaN."""
    logits = model.audio_vocab_logits(out.audio_states[-1])
    has_audio = out.spliced.has_audio
    labels, label_paddings = ctc_labels(out.next_targets, out.next_mask, has_audio)
    per_row = optax.ctc_loss(logits, jnp.zeros(logits.shape[:2]), labels, label_paddings,
                             blank_id=model.placeholder_id)
    per_row = jnp.where(has_audio, per_row, 0.0)  # text-only rows: no audio, no CTC
    count = (1.0 - label_paddings).sum()
    denominator = count if denominator is None else denominator
    return per_row.sum() / jnp.maximum(denominator, 1.0), count


def targets_in_order(next_mask: jax.Array, width: int) -> tuple[jax.Array, jax.Array]:
    """([batch, width] positions, [batch, width] bool): each row's prediction positions that have a CE
    target, in order, then others (marked False): the i-th target of a row sits at column i."""
    order = jnp.argsort(~next_mask, axis=1, stable=True)[:, :width]
    return order, jnp.take_along_axis(next_mask, order, axis=1)


def text_teacher_kl(model, out, batch: dict, denominator=None) -> tuple[jax.Array, jax.Array]:
    """The text teacher (DiVA, arXiv 2410.02678; BLSP-KD, 2405.19041): the frozen LLM reads the row's
    spoken words as text where the audio goes (`data.examples.text_teacher_messages`), and its next-token
    distribution at every target token is the target of the student's, which hears them:
    KL(teacher ‖ student) per target token, summed over the rows' targets / their count
    (`denominator` replaces the count: gradient accumulation, `loss_normalizers`).

    Both conversations carry the same target tokens (the data checks it), so the i-th target of a
    row in one is the i-th in the other. Rows without teacher targets (text rows) add nothing. The
    teacher is the LLM with no adapter acting, which is the frozen LLM only when the adapters act at
    audio positions alone (lora.audio_only; config.py refuses the text teacher otherwise)."""
    t_next = batch["text_teacher_loss_mask"][:, 1:]
    width = min(out.next_mask.shape[1], t_next.shape[1])
    t_pos, t_valid = targets_in_order(t_next, width)
    s_pos, s_valid = targets_in_order(out.next_mask, width)
    teacher = model.llm(batch["text_teacher_ids"], attention_mask=batch["text_teacher_attention_mask"],
                        logits_to_keep=t_pos).logits
    log_t = jax.nn.log_softmax(jax.lax.stop_gradient(teacher).astype(jnp.float32), axis=-1)
    log_s = jax.nn.log_softmax(jnp.take_along_axis(out.logits, s_pos[..., None], axis=1).astype(jnp.float32), axis=-1)
    valid = (t_valid & s_valid).astype(jnp.float32)
    kl = jnp.sum(jnp.exp(log_t) * (log_t - log_s), axis=-1)
    count = valid.sum()
    denominator = count if denominator is None else denominator
    return jnp.sum(kl * valid) / jnp.maximum(denominator, 1.0), count


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
    metrics: ce, target_tokens, distill (0 without distillation) and its per-layer terms, loss,
    ctc only when loss.ctc_weight > 0, text_kl only when loss.text_teacher_weight > 0 (then the batch
    carries text_teacher_ids, text_teacher_attention_mask, text_teacher_loss_mask).
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
    if cfg.ctc_weight > 0:  # (0, the default: not even traced, so the paper's loss is bit for bit today's)
        ctc, _ = audio_ctc(model, out, norm.get("ctc_label_tokens"))
        loss = loss + cfg.ctc_weight * ctc
        metrics["ctc"] = ctc
    if cfg.text_teacher_weight > 0:  # (0, the default: not traced either)
        kl, _ = text_teacher_kl(model, out, batch, norm.get("text_teacher_tokens"))
        loss = loss + cfg.text_teacher_weight * kl
        metrics["text_kl"] = kl
    metrics["loss"] = loss
    return loss, metrics
