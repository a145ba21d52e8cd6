"""Speed features (docs/BENCHMARKS.md, "Speed features"): rematerialisation, jax.nn.dot_product_attention,
looped attention (one example and kv head at a time, for XLA:CPU), scan over the frozen upper layers and the untruncated teacher change how the step is computed, never
what it computes: same logits, loss and gradients as the plain step."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from aura_jax import random_checkpoints as rc
from aura_jax.hf import from_pretrained
from aura_jax.models.layers import Trainable
from aura_jax.training.loss import aura_loss


def loss_and_grads(model, batch):
    graphdef, params, frozen = nnx.split(model, Trainable, ...)

    def f(p):
        return aura_loss(nnx.merge(graphdef, p, frozen), batch)

    (loss, metrics), grads = jax.jit(jax.value_and_grad(f, has_aux=True))(params)
    return float(loss), metrics, {"/".join(map(str, k)): np.asarray(v.get_value() if hasattr(v, "get_value") else v)
                                  for k, v in nnx.to_flat_state(grads)}


@pytest.fixture(scope="module")
def reference(make_aura, tiny_batch):
    return loss_and_grads(make_aura(), tiny_batch)


# scan_layers and dot_product attention are checked together (one compile of ~22 s each on two
# cores); dot_product's logits also have their own test below.
@pytest.mark.parametrize("overrides", [
    ("model.remat=full",),
    ("model.remat=dots_saveable",),
    ("model.attention=looped",),
    ("model.scan_layers=true", "model.remat=dots_with_no_batch_dims_saveable", "model.attention=dot_product"),
], ids="+".join)
def test_loss_and_gradients_equal_the_plain_step(make_aura, tiny_batch, reference, overrides):
    loss0, metrics0, grads0 = reference
    loss, metrics, grads = loss_and_grads(make_aura(*overrides), tiny_batch)
    assert abs(loss - loss0) <= 1e-5 * abs(loss0)
    for k in ("ce", "distill"):
        np.testing.assert_allclose(float(metrics[k]), float(metrics0[k]), rtol=1e-5)
    assert grads.keys() == grads0.keys()
    for k, g in grads.items():
        np.testing.assert_allclose(g, grads0[k], rtol=1e-4, atol=1e-6 * max(1.0, np.abs(grads0[k]).max()), err_msg=k)


def test_bf16_dots_follow_the_plain_step_within_bf16_tolerance(make_aura, tiny_batch, reference):
    """model.dot_dtype=bfloat16 (tests/models/test_bf16_dots.py): the student's and the teacher's weight dots
    in bf16, so the loss terms and every gradient move, by no more than bf16's rounding."""
    loss0, metrics0, grads0 = reference
    loss, metrics, grads = loss_and_grads(make_aura("model.dot_dtype=bfloat16"), tiny_batch)
    for k in ("ce", "distill"):
        a, b = float(metrics[k]), float(metrics0[k])
        assert a != b and abs(a - b) <= 2e-2 * abs(b), k
    assert grads.keys() == grads0.keys()
    for k, g in grads.items():
        assert np.abs(g - grads0[k]).max() <= 5e-2 * np.abs(grads0[k]).max() + 1e-7, k


def test_bf16_weights_stored_once_give_the_bf16_step_bit_for_bit(make_aura, tiny_batch):
    """The training step with bf16 dots stores the frozen dot weights in bf16 once
    (`store_frozen_dot_weights`, issue 45) instead of rounding them inside every step: the same bits,
    so the same loss and gradients to the last bit. The token lookup keeps the float32 table; the tied
    output projection reads a bf16 copy; trainables, biases and norms stay float32."""
    from aura_jax.models.layers import Embed, Linear, store_frozen_dot_weights

    model = make_aura("model.dot_dtype=bfloat16")
    loss0, metrics0, grads0 = loss_and_grads(model, tiny_batch)
    stored = store_frozen_dot_weights(model)
    linears = [m for _, m in nnx.iter_graph(model) if isinstance(m, Linear)]
    frozen = [m for m in linears if not isinstance(m.kernel, Trainable)]
    assert frozen and any(isinstance(m.kernel, Trainable) for m in linears)
    assert {m.kernel[...].dtype for m in frozen} == {jnp.dtype(jnp.bfloat16)}
    assert {m.kernel[...].dtype for m in linears if isinstance(m.kernel, Trainable)} == {jnp.dtype(jnp.float32)}
    assert {m.bias[...].dtype for m in frozen if m.bias is not None} == {jnp.dtype(jnp.float32)}
    embed = model.llm.embed_tokens
    assert embed.tied and embed.embedding[...].dtype == jnp.float32 and embed.attend_embedding[...].dtype == jnp.bfloat16
    assert stored == len(frozen) + 1
    loss, metrics, grads = loss_and_grads(model, tiny_batch)
    assert loss == loss0 and all(float(metrics[k]) == float(metrics0[k]) for k in ("ce", "distill"))
    assert grads.keys() == grads0.keys()
    for k, g in grads.items():
        np.testing.assert_array_equal(g, grads0[k], err_msg=k)


def test_untruncated_teacher_gives_the_same_targets(make_aura, tiny_batch, reference):
    assert make_aura().teacher.num_layers == 2  # K=2, low: layers 1..2 of 4
    model = make_aura("model.truncate_teacher=false")
    assert model.teacher.num_layers == 4 and model.teacher.is_complete
    loss, _, grads = loss_and_grads(model, tiny_batch)
    assert abs(loss - reference[0]) <= 1e-6 * abs(reference[0])


@pytest.mark.parametrize("attention", ["dot_product", "looped"])
@pytest.mark.parametrize("kv_heads,bidirectional", [(2, False), (1, True), (4, True)])
def test_attention_logits_equal_xla(tmp_path, kv_heads, bidirectional, attention):
    directory = rc.make_qwen2(tmp_path, with_tokenizer=False, seed=kv_heads, num_hidden_layers=2,
                              num_attention_heads=4, num_key_value_heads=kv_heads)
    rng = np.random.default_rng(0)
    ids = jnp.asarray(rng.integers(0, 512, (3, 12)))
    mask = np.ones((3, 12), bool)
    mask[1, :5] = False  # left padding
    mask[2, 9:] = False  # right padding
    bidir = None
    if bidirectional:
        bidir = np.zeros((3, 12), bool)
        bidir[:, 6:9] = True
        bidir = jnp.asarray(bidir)
    model = from_pretrained(directory)
    ref = model(ids, attention_mask=jnp.asarray(mask), output_hidden_states=True, bidirectional_mask=bidir)
    model.set_speed_options(attention=attention)
    out = model(ids, attention_mask=jnp.asarray(mask), output_hidden_states=True, bidirectional_mask=bidir)
    assert np.abs(np.asarray(out.logits)[mask] - np.asarray(ref.logits)[mask]).max() <= 1e-5
    model.set_speed_options(attention=attention, remat="full", scan_from=1)
    out = model(ids, attention_mask=jnp.asarray(mask), output_hidden_states=True, bidirectional_mask=bidir)
    assert np.abs(np.asarray(out.logits)[mask] - np.asarray(ref.logits)[mask]).max() <= 1e-5
    assert len(out.hidden_states) == len(ref.hidden_states) == 3


def test_looped_teacher_and_decoder_attention_equal_xla(tmp_path):
    """The Whisper encoder (the teacher: self-attention over every frame) and decoder (causal
    self-attention and cross-attention over the encoder's frames, a different length)."""
    directory = rc.make_whisper(tmp_path)
    encoder, decoder = from_pretrained(directory), from_pretrained(directory, part="decoder")
    rng = np.random.default_rng(1)
    features = jnp.asarray(rng.standard_normal((2, encoder.config.num_mel_bins, encoder.config.num_input_frames)),
                           jnp.float32)
    ref = encoder(features, output_hidden_states=True)
    encoder.set_attention("looped")
    out = encoder(features, output_hidden_states=True)
    for a, b in zip(out.hidden_states, ref.hidden_states, strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=2e-5, rtol=1e-5)
    ids = jnp.asarray(rng.integers(0, decoder.config.vocab_size, (2, 7)))
    logits = decoder(ids, ref.last_hidden_state).logits
    decoder.set_attention("looped")
    np.testing.assert_allclose(np.asarray(decoder(ids, ref.last_hidden_state).logits), np.asarray(logits),
                               atol=2e-5, rtol=1e-5)


def test_bad_speed_options_are_config_errors():
    from aura_jax.config import ConfigError, load_config

    with pytest.raises(ConfigError, match="model.remat"):
        load_config(None, ["model.remat=sometimes"])
    with pytest.raises(ConfigError, match="model.attention"):
        load_config(None, ["model.attention=flash"])


@pytest.mark.parametrize("t", [1, 5])
@pytest.mark.parametrize("shared_bias", [False, True])
def test_looped_attention_equals_dot_product_attention(t, shared_bias):
    """Direct check of `looped_attention`, including one query position (a decode step: one einsum
    over every example and head instead of the loop), against jax.nn.dot_product_attention, GQA."""
    from aura_jax.models.layers import looped_attention

    rng = np.random.default_rng(t)
    b, s, h, kv, d = 3, 9, 6, 2, 8
    q = jnp.asarray(rng.standard_normal((b, t, h, d)), jnp.float32)
    k, v = (jnp.asarray(rng.standard_normal((b, s, kv, d)), jnp.float32) for _ in range(2))
    allowed = rng.random((1 if shared_bias else b, 1, t, s)) < 0.7
    allowed[..., 0] = True  # every query sees at least one key
    bias = jnp.where(jnp.asarray(allowed), 0.0, -1e9).astype(jnp.float32)
    ref = jax.nn.dot_product_attention(q, k, v, bias=jnp.broadcast_to(bias, (b, 1, t, s)), scale=d ** -0.5)
    np.testing.assert_allclose(np.asarray(looped_attention(q, k, v, bias, d ** -0.5)), np.asarray(ref),
                               atol=1e-5, rtol=1e-5)
    unmasked = jax.nn.dot_product_attention(q, k, v, scale=d ** -0.5)
    np.testing.assert_allclose(np.asarray(looped_attention(q, k, v, None, d ** -0.5)), np.asarray(unmasked),
                               atol=1e-5, rtol=1e-5)
