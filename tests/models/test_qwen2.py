"""Our NNX Qwen2 equals transformers.Qwen2ForCausalLM (fp32 logits ≤ 1e-4) across
configurations, and its KV cache reproduces the full forward."""

import json

import jax.numpy as jnp
import numpy as np
import pytest
import torch
from transformers import Qwen2ForCausalLM as TorchQwen2

from aura_jax import random_checkpoints as rc
from aura_jax.hf import from_pretrained
from aura_jax.models.qwen2 import KVCache, Qwen2Config

CONFIGS = {
    # name: (checkpoint kwargs, padding side)
    "gqa2-tied-right": (dict(num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                             tie_word_embeddings=True, rope_theta=10000.0), "right"),
    "mqa-untied-left": (dict(num_hidden_layers=3, num_attention_heads=4, num_key_value_heads=1,
                             tie_word_embeddings=False, rope_theta=1e6), "left"),
    "mha-tied-nopad": (dict(num_hidden_layers=1, num_attention_heads=4, num_key_value_heads=4,
                            tie_word_embeddings=True, rope_theta=500.0), None),
    "gqa4-untied-left-wide": (dict(num_hidden_layers=2, hidden_size=96, num_attention_heads=8,
                                   num_key_value_heads=2, intermediate_size=160, tie_word_embeddings=False,
                                   rope_theta=25000.0), "left"),
}


def padded_batch(rng, vocab, lengths, total, side):
    ids = rng.integers(0, vocab, (len(lengths), total))
    mask = np.zeros((len(lengths), total), np.int64)
    for i, n in enumerate(lengths):
        if side == "left":
            mask[i, total - n:] = 1
        else:
            mask[i, :n] = 1
    return ids, mask


def torch_forward(directory, ids, mask):
    model = TorchQwen2.from_pretrained(str(directory), dtype=torch.float32).eval()
    positions = np.maximum(np.cumsum(mask, axis=1) - 1, 0)  # what generate() passes; = arange without left pad
    with torch.no_grad():
        return model(torch.as_tensor(ids), attention_mask=torch.as_tensor(mask),
                     position_ids=torch.as_tensor(positions), output_hidden_states=True)


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_logits_and_hidden_states_match_transformers(name, tmp_path):
    kwargs, side = CONFIGS[name]
    directory = rc.make_qwen2(tmp_path, with_tokenizer=False, seed=hash(name) % 1000, **kwargs)
    rng = np.random.default_rng(0)
    lengths = [11, 7, 3] if side else [11, 11, 11]
    ids, mask = padded_batch(rng, 512, lengths, 11, side or "right")
    ref = torch_forward(directory, ids, mask)
    ours = from_pretrained(directory)(jnp.asarray(ids), attention_mask=jnp.asarray(mask), output_hidden_states=True)
    real = mask.astype(bool)  # padded positions are unspecified in both implementations
    assert np.abs(np.asarray(ours.logits)[real] - ref.logits.numpy()[real]).max() <= 1e-4
    assert len(ours.hidden_states) == len(ref.hidden_states) == kwargs["num_hidden_layers"] + 1
    for a, b in zip(ours.hidden_states, ref.hidden_states):
        assert np.abs(np.asarray(a)[real] - b.numpy()[real]).max() <= 1e-4


def test_logits_to_keep_picks_positions_per_row(tiny_qwen2_dir):
    """An int keeps the last k positions; an index array [batch, k] keeps those positions of each row."""
    model = from_pretrained(tiny_qwen2_dir)
    ids = jnp.asarray(np.random.default_rng(2).integers(0, 512, (2, 7)))
    full = np.asarray(model(ids).logits)
    at = np.array([[0, 3, 6], [5, 1, 1]])
    np.testing.assert_allclose(np.asarray(model(ids, logits_to_keep=jnp.asarray(at)).logits),
                               np.take_along_axis(full, at[..., None], axis=1), atol=1e-6)
    np.testing.assert_allclose(np.asarray(model(ids, logits_to_keep=2).logits), full[:, -2:], atol=1e-6)


def test_padding_does_not_change_real_token_logits(tiny_qwen2_dir):
    """A left-padded row gives the same logits as the same tokens unpadded."""
    model = from_pretrained(tiny_qwen2_dir)
    ids = np.random.default_rng(1).integers(0, 512, (1, 6))
    alone = model(jnp.asarray(ids)).logits
    padded = np.concatenate([np.zeros((1, 3), np.int64), ids], axis=1)
    mask = np.concatenate([np.zeros((1, 3)), np.ones((1, 6))], axis=1)
    both = model(jnp.asarray(padded), attention_mask=jnp.asarray(mask)).logits
    np.testing.assert_allclose(np.asarray(both)[:, 3:], np.asarray(alone), atol=1e-5)


def test_rope_theta_read_from_v4_and_v5_configs():
    base = dict(vocab_size=8, hidden_size=8, intermediate_size=16, num_hidden_layers=1, num_attention_heads=2)
    v4 = Qwen2Config.from_hf({**base, "rope_theta": 1234.0})
    v5 = Qwen2Config.from_hf({**base, "rope_parameters": {"rope_theta": 4321.0, "rope_type": "default"}})
    assert (v4.rope_theta, v5.rope_theta) == (1234.0, 4321.0)
    assert v4.num_key_value_heads == 2 and v4.head_dim == 4  # defaults: MHA, hidden / heads
    with pytest.raises(ValueError, match="rope type 'yarn'"):
        Qwen2Config.from_hf({**base, "rope_scaling": {"type": "yarn", "factor": 4.0}})


def test_v4_style_config_json_loads_with_parity(tmp_path):
    """An older checkpoint stores a top-level rope_theta; both transformers and we must honour it."""
    directory = rc.make_qwen2(tmp_path, with_tokenizer=False, num_hidden_layers=1, rope_theta=777.0)
    cfg = json.loads((directory / "config.json").read_text())
    theta = cfg.pop("rope_parameters")["rope_theta"]
    cfg["rope_theta"] = theta
    (directory / "config.json").write_text(json.dumps(cfg))
    model = from_pretrained(directory)
    assert model.config.rope_theta == 777.0
    ids = np.random.default_rng(2).integers(0, 512, (1, 40))  # long enough for theta to matter
    mask = np.ones_like(ids)
    ref = torch_forward(directory, ids, mask)
    assert np.abs(np.asarray(model(jnp.asarray(ids)).logits) - ref.logits.numpy()).max() <= 1e-4


def test_kv_cache_prefill_then_decode_equals_full_forward(tiny_qwen2_dir):
    model = from_pretrained(tiny_qwen2_dir)
    rng = np.random.default_rng(3)
    ids, mask = padded_batch(rng, 512, [9, 5], 9, "left")
    full = np.asarray(model(jnp.asarray(ids), attention_mask=jnp.asarray(mask)).logits)
    cache = KVCache.create(model.config, batch=2, max_len=12)
    prefill = 6
    out = model(jnp.asarray(ids[:, :prefill]), attention_mask=jnp.asarray(mask[:, :prefill]), cache=cache)
    steps = [np.asarray(out.logits)]
    cache = out.cache
    for j in range(prefill, 9):
        out = model(jnp.asarray(ids[:, j:j + 1]), attention_mask=jnp.asarray(mask[:, j:j + 1]), cache=cache)
        steps.append(np.asarray(out.logits))
        cache = out.cache
    incremental = np.concatenate(steps, axis=1)
    real = mask.astype(bool)
    assert int(cache.index) == 9
    assert np.abs(incremental[real] - full[real]).max() <= 1e-5


def test_logits_to_keep_gives_the_last_positions_logits(tiny_qwen2_dir):
    model = from_pretrained(tiny_qwen2_dir)
    ids = jnp.asarray(np.random.default_rng(5).integers(10, 500, (2, 9)))
    full = np.asarray(model(ids).logits)
    for k in (1, 3):
        kept = np.asarray(model(ids, logits_to_keep=k).logits)
        assert kept.shape == (2, k, full.shape[-1])
        np.testing.assert_allclose(kept, full[:, -k:], atol=1e-6, rtol=0)
