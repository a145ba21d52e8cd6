"""Llama-family backbones: Qwen2 without the q/k/v biases (one model with a switch), with default or
Llama-3 RoPE, against transformers' LlamaForCausalLM; anything else is one clear line."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest

from aura_jax.hf import CheckpointError, from_pretrained
from aura_jax.models.qwen2 import Qwen2Config, rope_inv_freq

LLAMA3 = {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
          "original_max_position_embeddings": 16}


def _llama(tmp_path, **kw):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=128, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                         rope_theta=500000.0, tie_word_embeddings=True, **kw)
    model = LlamaForCausalLM(config).eval()
    model.save_pretrained(tmp_path)
    return model


@pytest.mark.parametrize("rope", [None, LLAMA3], ids=["default", "llama3"])
def test_logits_equal_transformers_llama_past_the_original_context(tmp_path, rope):
    import torch

    theirs = _llama(tmp_path, rope_scaling=rope)
    ours = from_pretrained(tmp_path)
    assert ours.config.attention_bias is False and ours.layers[0].self_attn.q_proj.bias is None
    ids = np.random.default_rng(0).integers(0, 128, (2, 100))  # positions to 99, the original context is 16
    with torch.no_grad():
        ref = theirs(torch.as_tensor(ids)).logits.numpy()
    np.testing.assert_allclose(np.asarray(ours(jnp.asarray(ids)).logits), ref, atol=2e-5)


def test_llama3_frequencies_equal_transformers_and_differ_from_default():
    import torch
    from transformers import LlamaConfig
    from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS

    config = LlamaConfig(hidden_size=64, num_attention_heads=4, rope_theta=500000.0, rope_scaling=LLAMA3)
    ref, _ = ROPE_INIT_FUNCTIONS["llama3"](config, torch.device("cpu"))
    ours = np.asarray(rope_inv_freq(16, 500000.0, (8.0, 1.0, 4.0, 16)))
    np.testing.assert_allclose(ours, ref.numpy(), rtol=1e-6)
    assert not np.allclose(ours, np.asarray(rope_inv_freq(16, 500000.0)))


def test_a_qwen2_keeps_its_biases_and_an_explicit_attention_bias_wins():
    base = dict(vocab_size=8, hidden_size=8, intermediate_size=8, num_hidden_layers=1, num_attention_heads=2)
    assert Qwen2Config.from_hf({**base, "model_type": "qwen2"}).attention_bias is True
    assert Qwen2Config.from_hf({**base, "model_type": "llama"}).attention_bias is False
    assert Qwen2Config.from_hf({**base, "model_type": "llama", "attention_bias": True}).attention_bias is True


@pytest.mark.parametrize("extra, message", [
    ({"rope_scaling": {"rope_type": "yarn", "factor": 4.0}}, "rope type 'yarn' is not supported"),
    ({"rope_scaling": {"rope_type": "llama3", "factor": 8.0}}, "rope type 'llama3' needs 'low_freq_factor'"),
    ({"mlp_bias": True}, "mlp_bias=true is not supported"),
])
def test_what_we_cannot_run_is_one_line_naming_the_file(tmp_path, extra, message):
    import json

    _llama(tmp_path)
    cfg = json.loads((tmp_path / "config.json").read_text())
    cfg.pop("rope_parameters", None)
    (tmp_path / "config.json").write_text(json.dumps({**cfg, **extra}))
    with pytest.raises(CheckpointError, match=rf"config.json: .*{message}"):
        from_pretrained(tmp_path)


def test_another_model_type_names_the_supported_ones(tmp_path):
    (tmp_path / "config.json").write_text('{"model_type": "mistral"}')
    with pytest.raises(CheckpointError, match=r"model_type 'mistral' is not supported .*'llama'"):
        from_pretrained(tmp_path)


def test_check_parity_on_a_llama_directory(tmp_path, capsys):
    from aura_jax import cli

    _llama(tmp_path, rope_scaling=LLAMA3)
    assert cli.main(["check-parity", "--hf", str(tmp_path)]) == 0
    assert "(llama, tolerance" in capsys.readouterr().out
