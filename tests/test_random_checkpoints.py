"""`aura-jax make-random`: random weights at the real shapes, loadable by both worlds."""

import json

import jax.numpy as jnp
import numpy as np
import pytest
import torch
from transformers import (
    AutoModelForCausalLM,
    Qwen2Config,
    Qwen2ForCausalLM,
    WhisperConfig,
    WhisperForConditionalGeneration,
)

from aura_jax.cli import main
from aura_jax.hf import from_pretrained
from aura_jax.random_checkpoints import PRESETS, make_random


@pytest.mark.parametrize("preset,billions", [("qwen2.5-7b-instruct", 7.62), ("qwen2.5-3b-instruct", 3.09),
                                             ("whisper-large-v3", 1.54)])
def test_presets_have_the_published_sizes(preset, billions):
    kind, shape = PRESETS[preset]
    with torch.device("meta"):
        if kind == "qwen2":
            model = Qwen2ForCausalLM(Qwen2Config(**shape))
        else:
            model = WhisperForConditionalGeneration(WhisperConfig(**shape, decoder_start_token_id=50258))
    assert abs(sum(p.numel() for p in model.parameters()) / 1e9 - billions) < 0.01


def test_sharded_random_qwen2_loads_in_transformers_and_jax(tmp_path):
    out = make_random("qwen2.5-7b-instruct", tmp_path / "q", dtype="float32", max_shard_bytes=200_000,
                      shape_overrides=dict(num_hidden_layers=2, hidden_size=64, intermediate_size=128,
                                           num_attention_heads=4, num_key_value_heads=2, vocab_size=1000))
    index = json.loads((out / "model.safetensors.index.json").read_text())
    assert len(set(index["weight_map"].values())) > 1 and "lm_head.weight" in index["weight_map"]
    ids = np.random.default_rng(0).integers(0, 1000, (1, 12))
    ref = AutoModelForCausalLM.from_pretrained(str(out), dtype=torch.float32)(torch.as_tensor(ids)).logits
    ours = from_pretrained(out)(jnp.asarray(ids)).logits
    assert np.abs(np.asarray(ours) - ref.detach().numpy()).max() < 1e-4
    assert (out / "tokenizer.json").exists()


def test_cli_make_random_whisper_shape(tmp_path, capsys):
    assert main(["make-random", "--preset", "tiny-whisper", "--out", str(tmp_path / "w")]) == 0
    assert "wrote random tiny-whisper" in capsys.readouterr().out
    encoder = from_pretrained(tmp_path / "w", num_layers=1)
    assert encoder.config.num_mel_bins == 128


def test_unknown_preset_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="unknown preset 'qwen3'"):
        make_random("qwen3", tmp_path)


def test_fast_random_weights_are_windows_of_one_random_block(tmp_path):
    """--fast (the GPU check's 7B in seconds): every weight is the shared 2^24-value block from its own
    offset, so weights are random-looking (std 0.02), differ from each other, and load like any other."""
    from safetensors.numpy import load_file

    out = make_random("qwen2.5-7b-instruct", tmp_path / "q", dtype="float32", fast=True,
                      shape_overrides=dict(num_hidden_layers=2, hidden_size=64, intermediate_size=128,
                                           num_attention_heads=4, num_key_value_heads=2, vocab_size=1000))
    w = load_file(str(out / "model.safetensors"))
    q, k = w["model.layers.0.self_attn.q_proj.weight"], w["model.layers.1.self_attn.q_proj.weight"]
    assert abs(q.std() - 0.02) < 0.002 and not np.array_equal(q, k)
    assert len(np.unique(q)) == q.size  # a window of distinct random values, not a repeated pattern
    assert (w["model.norm.weight"] == 1).all() and (w["model.layers.0.self_attn.q_proj.bias"] == 0).all()
    ids = np.random.default_rng(0).integers(0, 1000, (1, 8))
    ref = AutoModelForCausalLM.from_pretrained(str(out), dtype=torch.float32)(torch.as_tensor(ids)).logits
    assert np.isfinite(ref.detach().numpy()).all()


def test_the_real_pairs_presets_have_the_real_models_shapes(real_models, tmp_path):
    import json

    from transformers import LlamaConfig, LlamaForCausalLM

    for preset, real in (("smollm2-135m-instruct", "smollm2-135m-instruct"), ("whisper-tiny.en", "whisper-tiny.en")):
        ours = json.loads((make_random(preset, tmp_path / preset, config_only=True) / "config.json").read_text())
        theirs = json.loads((real_models[real] / "config.json").read_text())
        keys = ["model_type", "vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers",
                "num_attention_heads", "num_key_value_heads", "head_dim", "tie_word_embeddings",
                "num_mel_bins", "d_model", "encoder_layers", "decoder_layers", "encoder_ffn_dim"]
        assert {k: ours.get(k) for k in keys} == {k: theirs.get(k) for k in keys}, preset
    with torch.device("meta"):
        llama = LlamaForCausalLM(LlamaConfig(**PRESETS["llama-3.2-1b-instruct"][1]))
    assert abs(sum(p.numel() for p in llama.parameters()) / 1e9 - 1.24) < 0.01
