"""AuRA pieces: patch embedding, placeholder splice, audio states, heads, teacher
targets — each against an explicit reference written independently here."""

import math

import jax.numpy as jnp
import numpy as np
import pytest
import torch
from flax import nnx
from transformers import WhisperModel

from aura_jax.hf import from_pretrained
from aura_jax.models.aura import AudioPatchEmbed, DistillHead, splice_audio
from aura_jax.models.lora import lora_modules


def test_patch_embedding_is_layernorm_of_projection_plus_position():
    embed = AudioPatchEmbed(n_mels=4, patch_frames=5, max_tokens=6, hidden=8, rngs=nnx.Rngs(0))
    embed.norm.scale.set_value(jnp.linspace(0.5, 1.5, 8))
    embed.norm.bias.set_value(jnp.linspace(-0.1, 0.1, 8))
    feats = np.random.default_rng(0).standard_normal((2, 4, 30)).astype(np.float32)
    out = np.asarray(embed(jnp.asarray(feats)))
    w, b = np.asarray(embed.proj.kernel[...]), np.asarray(embed.proj.bias[...])
    g, beta, pos = (np.asarray(v[...]) for v in (embed.norm.scale, embed.norm.bias, embed.positions))
    assert out.shape == (2, 6, 8)
    for row in range(2):
        for i in range(6):
            x = feats[row, :, i * 5:(i + 1) * 5].reshape(-1)  # bins major, frames minor
            y = x @ w + b
            y = (y - y.mean()) / np.sqrt(y.var() + 1e-5) * g + beta
            np.testing.assert_allclose(out[row, i], y + pos[i], atol=1e-5)


def reference_splice(ids, mask, lmask, text, audio, placeholder):
    """Python-list splice: one row at a time."""
    rows = []
    for r in range(ids.shape[0]):
        n, t = audio.shape[1], ids.shape[1]
        where = list(ids[r]).index(placeholder) if placeholder in ids[r] else None
        if where is None:
            emb = list(text[r]) + [np.zeros_like(text[r, 0])] * (n - 1)
            am = list(mask[r]) + [False] * (n - 1)
            aud = [False] * (t + n - 1)
            tgt = list(ids[r]) + [0] * (n - 1)
            lm = list(lmask[r]) + [False] * (n - 1)
        else:
            emb = list(text[r, :where]) + list(audio[r]) + list(text[r, where + 1:])
            am = list(mask[r, :where]) + [True] * n + list(mask[r, where + 1:])
            aud = [False] * where + [True] * n + [False] * (t - where - 1)
            tgt = list(ids[r, :where]) + [0] * n + list(ids[r, where + 1:])
            lm = list(lmask[r, :where]) + [False] * n + list(lmask[r, where + 1:])
        rows.append((np.array(emb), np.array(am), np.array(aud), np.array(tgt), np.array(lm) & np.array(am)))
    return rows


def test_splice_matches_a_row_by_row_reference():
    rng = np.random.default_rng(0)
    ph, t, n = 7, 9, 4
    ids = rng.integers(8, 50, (3, t))
    mask = np.ones((3, t), bool)
    ids[0, 2] = ph  # placeholder early, full length
    ids[1, 5] = ph
    mask[1, 7:] = False  # right-padded shorter prompt
    ids[1, 7:] = 0
    mask[2, 6:] = False  # text-only row, padded
    lmask = rng.random((3, t)) < 0.5
    text = rng.standard_normal((3, t, 3)).astype(np.float32)
    audio = rng.standard_normal((3, n, 3)).astype(np.float32)
    got = splice_audio(jnp.asarray(text), jnp.asarray(ids), jnp.asarray(mask), jnp.asarray(lmask),
                       jnp.asarray(audio), ph)
    assert got.embeds.shape == (3, t + n - 1, 3)
    np.testing.assert_array_equal(np.asarray(got.has_audio), [True, True, False])
    np.testing.assert_array_equal(np.asarray(got.audio_start), [2, 5, t])
    for r, (emb, am, aud, tgt, lm) in enumerate(reference_splice(ids, mask, lmask, text, audio, ph)):
        real = am
        np.testing.assert_array_equal(np.asarray(got.attention_mask[r]), am)
        np.testing.assert_array_equal(np.asarray(got.audio_mask[r]), aud)
        np.testing.assert_array_equal(np.asarray(got.loss_mask[r]), lm)
        np.testing.assert_array_equal(np.asarray(got.targets[r])[real & ~aud], tgt[real & ~aud])
        np.testing.assert_array_equal(np.asarray(got.embeds[r])[real], emb[real])


def test_text_only_row_is_untouched_by_the_student(make_aura, tiny_batch, tiny_qwen2_dir):
    """With B = 0 the text-only row's logits equal the frozen base model's."""
    model = make_aura()
    out = model.student(tiny_batch["input_ids"], tiny_batch["attention_mask"], tiny_batch["loss_mask"],
                        tiny_batch["audio_features"])
    row, t = 2, tiny_batch["input_ids"].shape[1]
    base = from_pretrained(tiny_qwen2_dir)(tiny_batch["input_ids"][row:row + 1],
                                           attention_mask=tiny_batch["attention_mask"][row:row + 1]).logits
    real = np.asarray(tiny_batch["attention_mask"][row])
    np.testing.assert_allclose(np.asarray(out.logits[row, :t])[real], np.asarray(base[0])[real], atol=1e-5)


def test_with_audio_only_lora_text_rows_and_text_before_the_audio_are_the_base_models(make_aura, tiny_batch,
                                                                                      tiny_qwen2_dir):
    """lora.audio_only: B ≠ 0, yet a text-only row's logits and a speech row's logits before its audio
    are the frozen base model's; the audio states (and what follows them) are adapted."""
    model = make_aura("lora.audio_only=true")
    for _, _, module in lora_modules(model.llm):
        module.lora_b.set_value(jnp.full(module.lora_b.shape, 0.05))
    b = tiny_batch
    out = model.student(b["input_ids"], b["attention_mask"], b["loss_mask"], b["audio_features"])
    base = from_pretrained(tiny_qwen2_dir)
    t = b["input_ids"].shape[1]
    real = np.asarray(b["attention_mask"][2])
    text = base(b["input_ids"][2:3], attention_mask=b["attention_mask"][2:3]).logits
    np.testing.assert_allclose(np.asarray(out.logits[2, :t])[real], np.asarray(text[0])[real], atol=1e-5)
    sp = out.spliced
    plain = base(inputs_embeds=sp.embeds, attention_mask=sp.attention_mask, output_hidden_states=True)
    for r in range(2):  # speech rows: identical up to the audio start, different at the audio
        s = int(sp.audio_start[r])
        np.testing.assert_allclose(np.asarray(out.logits[r, :s]), np.asarray(plain.logits[r, :s]), atol=1e-5)
        audio = np.asarray(plain.hidden_states[1][r])[np.asarray(sp.audio_mask[r])]
        assert np.abs(np.asarray(out.audio_states[0][r]) - audio).max() > 1e-2


def test_audio_states_are_the_adapted_layers_outputs_at_audio_positions(make_aura, tiny_batch):
    model = make_aura()
    out = model.student(tiny_batch["input_ids"], tiny_batch["attention_mask"], tiny_batch["loss_mask"],
                        tiny_batch["audio_features"])
    sp = out.spliced
    full = model.llm(inputs_embeds=sp.embeds, attention_mask=sp.attention_mask, output_hidden_states=True)
    assert len(out.audio_states) == 2
    for l, states in enumerate(out.audio_states, start=1):
        for r in range(2):  # speech rows
            expected = np.asarray(full.hidden_states[l][r])[np.asarray(sp.audio_mask[r])]
            np.testing.assert_allclose(np.asarray(states[r]), expected, atol=1e-6)


def test_audio_attention_is_causal_unless_bidirectional(make_aura, tiny_batch):
    def first_token_state(model, features):
        out = model.student(tiny_batch["input_ids"], tiny_batch["attention_mask"], tiny_batch["loss_mask"], features)
        return np.asarray(out.audio_states[0][0, 0])

    changed = tiny_batch["audio_features"].at[0, :, -10:].add(1.0)  # perturb the last audio patch only
    causal = make_aura()
    assert np.array_equal(first_token_state(causal, tiny_batch["audio_features"]), first_token_state(causal, changed))
    bidir = make_aura("distill.bidirectional_audio=true")
    assert not np.allclose(first_token_state(bidir, tiny_batch["audio_features"]), first_token_state(bidir, changed))


def test_attention_groups_let_same_group_tokens_attend_both_ways_and_nothing_else():
    """attention_mask_bias with int groups against a brute-force rule: allowed iff causal, or both
    positions in the same group (≥ 0); padding keys never; a bool mask is one group."""
    from aura_jax.models.qwen2 import MASK_VALUE, attention_mask_bias

    groups = jnp.asarray([[-1, 0, 0, 0, 1, 1, -1], [-1, -1, 2, 2, 3, -1, -1]], jnp.int32)
    key_mask = jnp.asarray([[True] * 7, [True] * 6 + [False]])
    got = np.asarray(attention_mask_bias(jnp.arange(7), jnp.arange(7), key_mask, groups, groups))[:, 0] == 0
    g, km = np.asarray(groups), np.asarray(key_mask)
    want = np.array([[[(k <= q or (g[b, q] >= 0 and g[b, q] == g[b, k])) and km[b, k] for k in range(7)]
                      for q in range(7)] for b in range(2)])
    assert np.array_equal(got, want) and got[0, 1, 3] and not got[0, 3, 4] and got[0, 4, 5]
    as_bool = attention_mask_bias(jnp.arange(7), jnp.arange(7), key_mask, groups >= 0, groups >= 0)
    one = jnp.where(groups >= 0, 0, -1)
    assert np.array_equal(np.asarray(as_bool), np.asarray(attention_mask_bias(jnp.arange(7), jnp.arange(7),
                                                                                key_mask, one, one)))
    assert float(np.asarray(as_bool).min()) == pytest.approx(MASK_VALUE)


def test_chunk_bidirectional_audio_sees_later_tokens_of_its_own_chunk_only(make_aura, tiny_batch):
    """distill.bidirectional_chunk=C: perturbing the last patch moves the audio states of its own chunk
    (also the tokens before it there) and none of the earlier chunks."""
    model = make_aura("distill.bidirectional_audio=true", "distill.bidirectional_chunk=3")
    b = tiny_batch
    changed = b["audio_features"].at[0, :, -10:].add(1.0)  # the last patch of row 0
    states = [np.asarray(model.student(b["input_ids"], b["attention_mask"], b["loss_mask"], f).audio_states[0][0])
              for f in (b["audio_features"], changed)]
    n = states[0].shape[0]
    start = (n - 1) // 3 * 3  # the first token of the last patch's chunk
    moved = np.abs(states[0] - states[1]).max(axis=-1) > 1e-6
    assert not moved[:start].any() and moved[start:].all() and start < n - 1


def test_distill_head_is_rmsnorm_linear_gelu_linear():
    head = DistillHead(8, 6, 5, rngs=nnx.Rngs(0))
    x = np.random.default_rng(0).standard_normal((2, 3, 8)).astype(np.float32)
    w1, b1 = np.asarray(head.fc1.kernel[...]), np.asarray(head.fc1.bias[...])
    w2, b2 = np.asarray(head.fc2.kernel[...]), np.asarray(head.fc2.bias[...])
    h = x / np.sqrt((x ** 2).mean(-1, keepdims=True) + 1e-6) * np.asarray(head.norm.scale[...])
    h = h @ w1 + b1
    h = 0.5 * h * (1 + np.vectorize(math.erf)(h / math.sqrt(2)))  # exact GELU
    np.testing.assert_allclose(np.asarray(head(jnp.asarray(x))), h @ w2 + b2, atol=1e-5)


def test_teacher_targets_equal_torch_whisper_layers_aligned(make_aura, tiny_batch, tiny_whisper_dir):
    model = make_aura("distill.teacher_layers=[1,3]")
    feats = np.asarray(tiny_batch["audio_features"])
    valid = np.asarray(tiny_batch["audio_valid_frames"])
    targets = model.teacher_targets(jnp.asarray(feats[:, None]), jnp.asarray(valid[:, None]), 300)
    encoder = WhisperModel.from_pretrained(str(tiny_whisper_dir)).encoder.eval()
    with torch.no_grad():
        hs = encoder(torch.as_tensor(feats.copy()), output_hidden_states=True).hidden_states
    for target, layer in zip(targets, [1, 3]):
        for r in range(2):
            frames = hs[layer][r, :math.ceil(valid[r] / 2)].T[None]  # drop the padded frames, align to N
            if frames.shape[-1] >= 300:
                aligned = torch.nn.functional.adaptive_avg_pool1d(frames, 300)
            else:
                aligned = torch.nn.functional.interpolate(frames, size=300, mode="linear", align_corners=False)
            np.testing.assert_allclose(np.asarray(target[r]), aligned[0].T.numpy(), atol=1e-4)
    # The synthesized clips are short (< 6 s), so this exercises interpolation; pooling is covered
    # exhaustively in tests/test_distill.py.
    assert all(math.ceil(v / 2) < 300 for v in valid[:2])


def test_aura_model_rejects_bad_wiring(tiny_qwen2_dir, tiny_whisper_dir):
    from aura_jax.config import load_config
    from aura_jax.models.aura import AuraModel

    cfg = load_config(None, ["lora.num_layers=2", "lora.rank=4"])
    llm = lambda: from_pretrained(tiny_qwen2_dir)
    with pytest.raises(ValueError, match="outside the vocabulary"):
        AuraModel(llm(), None, cfg, placeholder_id=10_000, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="teacher was built with 1"):
        AuraModel(llm(), from_pretrained(tiny_whisper_dir, num_layers=1), cfg, placeholder_id=3, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="audio.n_mels=80"):
        AuraModel(llm(), from_pretrained(tiny_whisper_dir, num_layers=2), load_config(None, ["audio.n_mels=80", "lora.num_layers=2"]),
                  placeholder_id=3, rngs=nnx.Rngs(0))
