"""Our NNX Whisper decoder equals transformers' `WhisperForConditionalGeneration`: teacher-forced
logits, cached step-by-step logits, and greedy `generate` token for token; the pieces of
`generate_whisper` lower from abstract inputs alone."""

from __future__ import annotations

import functools
import json
import re
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from flax import nnx
from safetensors.numpy import load_file, save_file

from aura_jax import hf
from aura_jax.hf import CheckpointError, from_pretrained
from aura_jax.inference.generate import generate_whisper, whisper_decode_step, whisper_encode, whisper_prefill
from aura_jax.models.whisper import WhisperDecoder, WhisperDecoderCache

MELS, SOURCE = 16, 16  # 32 input frames: a tiny encoder, so the whole file compiles in seconds
PROMPTS = np.array([[3, 10, 11, 12], [3, 20, 21, 22]])  # forced prompt ids per row (start token = 3)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """(directory, torch model): a tiny WhisperForConditionalGeneration saved as a HF directory.
    Weights are widened and the learned positions made large: with transformers' init (or small
    positions) every greedy step picks the same token, and a token-for-token match would prove little."""
    from transformers import WhisperConfig, WhisperForConditionalGeneration

    torch.manual_seed(0)
    config = WhisperConfig(
        vocab_size=96, num_mel_bins=MELS, d_model=32, encoder_layers=2, encoder_attention_heads=4,
        encoder_ffn_dim=64, decoder_layers=2, decoder_attention_heads=4, decoder_ffn_dim=64,
        max_source_positions=SOURCE, max_target_positions=24,
        pad_token_id=0, bos_token_id=1, eos_token_id=2, decoder_start_token_id=3,
        suppress_tokens=[], begin_suppress_tokens=[])
    model = WhisperForConditionalGeneration(config).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.2)
        model.model.decoder.embed_tokens.weight.normal_(0.0, 0.3)
        model.model.decoder.embed_positions.weight.normal_(0.0, 3.0)
    directory = tmp_path_factory.mktemp("tiny-whisper-decoder")
    model.save_pretrained(str(directory))
    return directory, model


@pytest.fixture(scope="module")
def features():
    return np.random.default_rng(0).standard_normal((2, MELS, 2 * SOURCE)).astype(np.float32)


@pytest.fixture(scope="module")
def ours(tiny, features):
    """(encoder, decoder, encoder hidden states) loaded by our from_pretrained."""
    encoder = from_pretrained(tiny[0])
    return encoder, from_pretrained(tiny[0], part="decoder"), encoder(jnp.asarray(features)).last_hidden_state


def max_abs(a, b) -> float:
    return float(np.max(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64))))


def test_teacher_forced_logits_equal_transformers(tiny, features, ours):
    ids = np.concatenate([PROMPTS, np.random.default_rng(1).integers(4, 96, (2, 6))], axis=1)
    with torch.no_grad():
        ref = tiny[1](input_features=torch.as_tensor(features), decoder_input_ids=torch.as_tensor(ids)).logits.numpy()
    out = ours[1](jnp.asarray(ids), ours[2])
    assert out.cache is None and out.logits.shape == ref.shape
    assert max_abs(out.logits, ref) <= 1e-5


def test_cached_steps_equal_the_full_forward(ours):
    """The prompt through `whisper_prefill`, then one token at a time through `whisper_decode_step`
    (the pieces `generate_whisper` is made of), each compiled once."""
    _, decoder, hidden = ours
    ids = jnp.asarray(np.concatenate([PROMPTS, np.random.default_rng(2).integers(4, 96, (2, 5))], axis=1))
    full = np.asarray(decoder(ids, hidden).logits)
    graphdef, state = nnx.split(decoder)
    prefill = jax.jit(whisper_prefill, static_argnums=(0, 4))
    step = jax.jit(whisper_decode_step, static_argnums=0)
    logits, cache = prefill(graphdef, state, ids[:, :4], hidden, 12)
    steps = [logits]
    for i in range(4, ids.shape[1]):
        logits, cache = step(graphdef, state, ids[:, i], cache)
        steps.append(logits)
    assert int(cache.index) == ids.shape[1] and cache.keys[0].shape == (2, 12, 4, 8)
    assert max_abs(np.stack(steps, axis=1), full[:, 3:]) <= 1e-5


def transformers_generate(model, features, n, eos):
    """New tokens of transformers' Whisper generate; it drops a row's final EOS, so ours (which keeps
    it, like `generate`) is compared with EOS turned into padding."""
    with torch.no_grad():
        ref = model.generate(torch.as_tensor(features), decoder_input_ids=torch.as_tensor(PROMPTS),
                             do_sample=False, max_new_tokens=n, eos_token_id=eos, pad_token_id=0).numpy()
    return np.pad(ref, ((0, 0), (0, n - ref.shape[1])))  # it stops early once every row is done


def test_greedy_generate_equals_transformers(tiny, features, ours):
    encoder, decoder, _ = ours
    n = 10
    run = functools.partial(generate_whisper, encoder, decoder, features, decoder_input_ids=PROMPTS,
                            max_new_tokens=n, pad_token_id=0)
    free = np.asarray(run(eos_token_id=2))  # the config's EOS: never emitted here
    assert all(len(set(row)) >= 4 for row in free), f"degenerate tiny model: {free}"
    np.testing.assert_array_equal(free, transformers_generate(tiny[1], features, n, eos=2))
    # An EOS that only row 0 emits (its first time at k): row 0 stops there, row 1 runs on.
    k = next(i for i in range(1, n) if free[0, i] not in free[0, :i] and free[0, i] not in free[1])
    eos = int(free[0, k])
    stopped = np.asarray(run(eos_token_id=[eos, 1000]))
    np.testing.assert_array_equal(np.where(stopped == eos, 0, stopped),
                                  transformers_generate(tiny[1], features, n, eos=eos))
    np.testing.assert_array_equal(stopped[0, :k + 1], free[0, :k + 1])
    assert (stopped[0, k + 1:] == 0).all()
    np.testing.assert_array_equal(stopped[1], free[1])


def test_prompt_plus_new_tokens_beyond_max_target_positions_is_an_error(ours, features):
    encoder, decoder, _ = ours
    with pytest.raises(ValueError, match="max_target_positions=24"):
        generate_whisper(encoder, decoder, features, decoder_input_ids=PROMPTS[0], max_new_tokens=21)


def test_pieces_lower_from_abstract_inputs(tiny):
    """The AOT path of the cascade's memory analysis: no weights read, only shapes."""
    directory = tiny[0]
    abstract_encoder = from_pretrained(directory, weights=False)
    abstract_decoder = from_pretrained(directory, part="decoder", weights=False)
    assert isinstance(abstract_decoder, WhisperDecoder)
    enc_gd, enc_state = nnx.split(abstract_encoder)
    dec_gd, dec_state = nnx.split(abstract_decoder)
    feats = jax.ShapeDtypeStruct((2, MELS, 2 * SOURCE), jnp.float32)
    hidden = jax.jit(whisper_encode, static_argnums=0).eval_shape(enc_gd, enc_state, feats)
    assert hidden.shape == (2, SOURCE, 32)
    prefill = jax.jit(functools.partial(whisper_prefill, max_len=12), static_argnums=0)
    assert prefill.lower(dec_gd, dec_state, jax.ShapeDtypeStruct((2, 4), jnp.int32), hidden).compile()
    cache = WhisperDecoderCache.abstract(abstract_decoder.config, batch=2, max_len=12, source_len=SOURCE)
    step = jax.jit(whisper_decode_step, static_argnums=0).lower(dec_gd, dec_state,
                                                                jax.ShapeDtypeStruct((2,), jnp.int32), cache)
    logits, new_cache = step.out_info
    assert logits.shape == (2, 96) and new_cache.keys[0].shape == (2, 12, 4, 8)
    assert step.compile()


def test_missing_decoder_tensor_names_it(tiny, tmp_path):
    d = tmp_path / "copy"
    shutil.copytree(tiny[0], d)
    tensors = load_file(str(d / "model.safetensors"))
    name = "model.decoder.layers.1.encoder_attn.v_proj.bias"
    del tensors[name]
    save_file(tensors, str(d / "model.safetensors"), metadata={"format": "pt"})
    with pytest.raises(CheckpointError, match=re.escape(name)):
        from_pretrained(d, part="decoder")
    from_pretrained(d)  # the encoder does not need it


def test_bare_whisper_model_layout_loads_the_same_decoder(tiny, tmp_path):
    """A `transformers.WhisperModel` directory names the tensors `decoder.*` (no `model.`)."""
    tiny[1].model.save_pretrained(str(tmp_path))
    assert "decoder.embed_tokens.weight" in load_file(str(tmp_path / "model.safetensors"))
    bare, full = from_pretrained(tmp_path, part="decoder"), from_pretrained(tiny[0], part="decoder")
    for (path, a), (_, b) in zip(nnx.to_flat_state(nnx.state(bare)), nnx.to_flat_state(nnx.state(full))):
        np.testing.assert_array_equal(np.asarray(a[...]), np.asarray(b[...]), err_msg=str(path))


def test_decoder_key_table_covers_the_decoder_exactly(tiny):
    tensors = load_file(str(tiny[0] / "model.safetensors"))
    used = {hf.hf_name(hf.nnx_path(path), hf.WHISPER_DECODER_RULES, "model.decoder.")[0]
            for path, var in nnx.iter_graph(from_pretrained(tiny[0], part="decoder", weights=False))
            if isinstance(var, nnx.Variable)}
    assert used == {k for k in tensors if k.startswith("model.decoder.")}


def test_part_argument_is_checked(tiny, tmp_path):
    with pytest.raises(ValueError, match="num_layers"):
        from_pretrained(tiny[0], part="decoder", num_layers=1)
    with pytest.raises(ValueError, match="part='joiner'"):
        from_pretrained(tiny[0], part="joiner")
    qwen2 = tmp_path / "qwen2"
    qwen2.mkdir()
    (qwen2 / "config.json").write_text(json.dumps({"model_type": "qwen2"}))
    with pytest.raises(ValueError, match="Whisper checkpoints only"):
        from_pretrained(qwen2, part="decoder", weights=False)
