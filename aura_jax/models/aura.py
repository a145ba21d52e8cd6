"""AuRA: the audio patch embedding, the placeholder splice, the distillation
heads, and the student (Qwen2 + LoRA in the first K layers) next to the frozen
teacher (a truncated Whisper encoder).

Trainable parts are `Trainable` parameters (LoRA A/B, patch embedding, heads);
everything else is frozen by construction.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx, struct

from aura_jax import distill
from aura_jax.audio import patchify
from aura_jax.config import Config
from aura_jax.models.layers import LayerNorm, Linear, RMSNorm, Trainable, constrain, param
from aura_jax.models.lora import apply_lora
from aura_jax.models.qwen2 import Qwen2ForCausalLM
from aura_jax.models.whisper import WhisperEncoder


class AudioPatchEmbed(nnx.Module):
    """e_i = LayerNorm(W x_i + b) + p_i, x_i = the i-th P-frame patch of the log-mel, flattened
    (bins major, frames minor). The LayerNorm sits after the projection."""

    def __init__(self, n_mels: int, patch_frames: int, max_tokens: int, hidden: int, *, rngs: nnx.Rngs,
                 dtype=jnp.float32):
        self.patch_frames, self.max_tokens = patch_frames, max_tokens
        self.proj = Linear(n_mels * patch_frames, hidden, use_bias=True, axes=("audio_patch", "embed"),
                           rngs=rngs, dtype=dtype, kind=Trainable)
        self.norm = LayerNorm(hidden, rngs=rngs, kind=Trainable)
        self.positions = param(rngs, nnx.initializers.normal(0.02), (max_tokens, hidden), jnp.float32,
                               ("audio_tokens", "embed"), Trainable)

    def __call__(self, features: jax.Array, first_patch: jax.Array | None = None) -> jax.Array:
        """features [batch, mel, frames] → audio tokens [batch, frames / P, hidden].

        `first_patch` (streaming): the patch number of the first patch here, so a chunk gets the
        positions it has in the whole clip; indices past the table (a padded last chunk's
        masked patches) are clipped to its last row."""
        patches = patchify(features, self.patch_frames)
        n = patches.shape[1]
        if n > self.max_tokens:
            raise ValueError(f"{n} audio tokens exceed the {self.max_tokens} learned positions")
        x = self.norm(self.proj(patches))
        if first_patch is None:
            return x + self.positions[...][:n].astype(x.dtype)
        rows = jnp.take(self.positions[...], first_patch + jnp.arange(n), axis=0, mode="clip")
        return x + rows.astype(x.dtype)


class DistillHead(nnx.Module):
    """h = Linear2(GELU(Linear1(RMSNorm(s)))): student width → teacher width."""

    def __init__(self, hidden: int, head_hidden: int, teacher_width: int, *, rngs: nnx.Rngs):
        self.norm = RMSNorm(hidden, eps=1e-6, rngs=rngs, kind=Trainable)
        self.fc1 = Linear(hidden, head_hidden, use_bias=True, axes=("embed", "head_mlp"), rngs=rngs, kind=Trainable)
        self.fc2 = Linear(head_hidden, teacher_width, use_bias=True, axes=("head_mlp", "teacher_embed"),
                          rngs=rngs, kind=Trainable)

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.fc2(jax.nn.gelu(self.fc1(self.norm(x.astype(jnp.float32))), approximate=False))


@struct.dataclass
class Spliced:
    """The mixed text+audio sequence after the audio tokens replaced the placeholder."""

    embeds: jax.Array  # [batch, T + N - 1, hidden]
    attention_mask: jax.Array  # [batch, T + N - 1] bool
    audio_mask: jax.Array  # [batch, T + N - 1] bool: inserted audio positions
    targets: jax.Array  # [batch, T + N - 1] token ids (text positions)
    loss_mask: jax.Array  # [batch, T + N - 1] bool: CE target positions (never audio or padding)
    text_positions: jax.Array  # [batch, T] where each input token landed (the placeholder: the first audio slot)
    audio_start: jax.Array  # [batch] index of the first audio token (T for text-only rows)
    has_audio: jax.Array  # [batch] bool


def splice_audio(text_embeds, input_ids, attention_mask, loss_mask, audio_embeds, placeholder_id: int) -> Spliced:
    """Replace each row's first `placeholder_id` token by its N audio tokens (length grows by N−1).

    Rows without a placeholder are text-only: their tokens keep their slots and the
    N−1 extra slots at the end are padding.
    """
    b, t = input_ids.shape
    n = audio_embeds.shape[1]
    is_placeholder = input_ids == placeholder_id
    has_audio = jnp.any(is_placeholder, axis=1)
    start = jnp.where(has_audio, jnp.argmax(is_placeholder, axis=1), t)[:, None]
    j = jnp.arange(t + n - 1)[None, :]
    in_audio = (j >= start) & (j < start + n) & has_audio[:, None]
    text_index = jnp.where(j < start, j, j - n + 1)
    text_valid = ~in_audio & ((j < start) | has_audio[:, None]) & (text_index < t)
    text_index = jnp.clip(text_index, 0, t - 1)
    audio_index = jnp.clip(j - start, 0, n - 1)

    take = lambda x, idx: jnp.take_along_axis(x, idx, axis=1)
    text_part = take(text_embeds, text_index[..., None])
    audio_part = take(audio_embeds.astype(text_embeds.dtype), audio_index[..., None])
    embeds = jnp.where(in_audio[..., None], audio_part, text_part)
    attn = jnp.where(in_audio, True, take(attention_mask.astype(bool), text_index) & text_valid)
    targets = jnp.where(text_valid, take(input_ids, text_index), 0)
    lmask = take(loss_mask.astype(bool), text_index) & text_valid & attn
    i = jnp.arange(t)[None, :]
    text_positions = jnp.where(has_audio[:, None] & (i > start), i + n - 1, i)
    return Spliced(embeds, attn, in_audio, targets, lmask, text_positions, start[:, 0], has_audio)


def audio_positions(hidden: jax.Array, start: jax.Array, n: int) -> jax.Array:
    """The n hidden states starting at each row's audio start: [batch, T', d] → [batch, n, d]."""
    return jax.vmap(lambda h, s: jax.lax.dynamic_slice_in_dim(h, s, n, axis=0))(hidden, start)


@struct.dataclass
class StudentOutput:
    logits: jax.Array  # [batch, T', vocab], or [batch, T − 1, vocab] with all_logits=False
    spliced: Spliced
    audio_states: tuple[jax.Array, ...]  # K × [batch, N, hidden]: outputs of adapted layers at audio positions
    next_targets: jax.Array  # [batch, len(logits)]: the token each logit row predicts (aligned, no shift)
    next_mask: jax.Array  # [batch, len(logits)] bool: whether that prediction is a CE target


def next_token_targets(spliced: Spliced, all_logits: bool):
    """(positions whose logits the CE needs or None for all, their targets, their CE mask).

    Position j predicts the token at j + 1. Every CE target is a text token, and input token
    i ≥ 1 sits at text_positions[:, i], so the T − 1 positions before those cover every target;
    the other T' − T positions (all but one of the audio tokens) predict nothing."""
    if all_logits:
        pad = lambda x: jnp.pad(x[:, 1:], ((0, 0), (0, 1)))  # the last position predicts nothing
        return None, pad(spliced.targets), pad(spliced.loss_mask)
    targets_at = spliced.text_positions[:, 1:]
    take = lambda x: jnp.take_along_axis(x, targets_at, axis=1)
    return targets_at - 1, take(spliced.targets), take(spliced.loss_mask)


class AuraModel(nnx.Module):
    """Student (patch embedding + Qwen2 with LoRA in layers < K + heads) and frozen teacher."""

    def __init__(self, llm: Qwen2ForCausalLM, teacher: WhisperEncoder | None, config: Config, *,
                 placeholder_id: int, rngs: nnx.Rngs):
        a, lo = config.audio, config.lora
        hidden = llm.config.hidden_size
        self.placeholder_id, self.config = placeholder_id, config
        self.num_student_layers = lo.num_layers
        if not 1 <= lo.num_layers <= llm.config.num_hidden_layers:
            raise ValueError(f"lora.num_layers={lo.num_layers} is out of range: the LLM has "
                             f"{llm.config.num_hidden_layers} layers")
        if not 0 <= placeholder_id < llm.config.vocab_size:
            raise ValueError(f"prompt.audio_token id {placeholder_id} is outside the vocabulary")
        apply_lora(llm, lo.num_layers, lo.rank, lo.scale_alpha, rngs=rngs, targets=tuple(lo.targets),
                   audio_only=lo.audio_only)
        m = config.model
        scan_from = lo.num_layers if m.scan_layers and lo.num_layers < llm.config.num_hidden_layers - 1 else None
        llm.set_speed_options(remat=m.remat, attention=m.attention, scan_from=scan_from)
        if teacher is not None:
            teacher.set_attention(m.attention)
        self.llm, self.teacher = llm, teacher
        self.audio_embed = AudioPatchEmbed(a.n_mels, a.patch_frames, a.num_frames // a.patch_frames, hidden,
                                           rngs=rngs, dtype=llm.dtype)
        if teacher is not None:
            if teacher.config.num_mel_bins != a.n_mels:
                raise ValueError(f"audio.n_mels={a.n_mels} but the teacher expects {teacher.config.num_mel_bins} mel bins")
            self.teacher_layers = distill.teacher_layer_schedule(
                config.distill.teacher_layers, lo.num_layers, teacher.config.encoder_layers)
            if max(self.teacher_layers) > teacher.num_layers:
                raise ValueError(f"distill.teacher_layers {self.teacher_layers} need teacher layer "
                                 f"{max(self.teacher_layers)} but the teacher was built with {teacher.num_layers}")
            width = teacher.config.d_model
            head_hidden = config.distill.head_hidden or width
            self.heads = nnx.List([DistillHead(hidden, head_hidden, width, rngs=rngs) for _ in range(lo.num_layers)])
        else:
            self.teacher_layers, self.heads = [], nnx.List([])

    def student(self, input_ids, attention_mask, loss_mask, audio_features, *,
                all_logits: bool = True) -> StudentOutput:
        """all_logits=False: the LM head runs only at the T − 1 positions that can predict a text
        token (`next_token_targets`), which is all the CE needs: at 300 audio tokens and 64 text
        slots that is a sixth of the head's FLOPs and of the [batch, positions, vocab] logits."""
        audio = self.audio_embed(audio_features)
        spliced = splice_audio(self.llm.embed(input_ids), input_ids, attention_mask, loss_mask, audio,
                               self.placeholder_id)
        keep, next_targets, next_mask = next_token_targets(spliced, all_logits)
        bidir = self.audio_attention_groups(spliced)
        out = self.llm(inputs_embeds=spliced.embeds, attention_mask=spliced.attention_mask,
                       output_hidden_states=True, bidirectional_mask=bidir, logits_to_keep=keep,
                       adapter_mask=spliced.audio_mask)
        n = audio.shape[1]
        states = tuple(audio_positions(out.hidden_states[l], spliced.audio_start, n)
                       for l in range(1, self.num_student_layers + 1))
        return StudentOutput(out.logits, spliced, states, next_targets, next_mask)

    def audio_attention_groups(self, spliced: Spliced) -> jax.Array | None:
        """Which tokens attend to each other both ways (distill.bidirectional_audio): None (causal, the
        paper), the audio mask (the whole span), or int chunk ids of `bidirectional_chunk` audio tokens
        counted from each row's first audio token (−1 elsewhere)."""
        d = self.config.distill
        if not d.bidirectional_audio:
            return None
        if not d.bidirectional_chunk:
            return spliced.audio_mask
        index = jnp.arange(spliced.audio_mask.shape[1])[None, :] - spliced.audio_start[:, None]
        return jnp.where(spliced.audio_mask, index // d.bidirectional_chunk, -1).astype(jnp.int32)

    def teacher_targets(self, features: jax.Array, valid_frames: jax.Array, n: int) -> list[jax.Array]:
        """Teacher hidden states of the paired layers, regrouped per sample and aligned to n tokens.

        features [batch, segments, mel, 3000], valid_frames [batch, segments] (valid mel frames).
        """
        b, s = features.shape[:2]
        out = self.teacher(features.reshape((b * s,) + features.shape[2:]), output_hidden_states=True)
        targets = []
        for t in self.teacher_layers:
            h = jax.lax.stop_gradient(out.hidden_states[t]).astype(jnp.float32)
            targets.append(distill.regroup_and_align(h.reshape((b, s) + h.shape[1:]), valid_frames, n))
        return targets

    def distill_predictions(self, audio_states) -> list[jax.Array]:
        return [head(s) for head, s in zip(self.heads, audio_states)]

    def audio_vocab_logits(self, states: jax.Array) -> jax.Array:
        """The frozen LLM's own output path (final norm, then LM head) on audio states [batch, N, hidden]
        → [batch, N, vocab] in float32: what the LLM would predict from them were they its last
        layer's output (the auxiliary CTC's logits; no new parameters). Pinned like the LM's logits
        (batch rows on their devices, vocab over "tensor"): see `constrain`."""
        if self.num_student_layers < self.llm.config.num_hidden_layers:
            states = self.llm.norm(states)  # (with K = every layer, hidden_states[K] is normed already)
        return constrain(self.llm.lm_logits(states), ("batch", None, "vocab")).astype(jnp.float32)
