"""Export to PyTorch: merged HF directory, PEFT adapter, the torch runner, and
JAX ↔ torch parity on the same audio and prompt."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch
from safetensors.numpy import load_file as load_numpy

from aura_jax.cli import main
from aura_jax.hf import SafetensorsDir
from aura_jax.models.lora import lora_modules
from aura_jax.torch.export import export
from aura_jax.training.checkpoint import restore_student


@pytest.fixture(scope="module")
def exported(tiny_run_dir, tiny_qwen2_dir, tmp_path_factory):
    return export(tiny_run_dir, tiny_qwen2_dir, tmp_path_factory.mktemp("exp") / "both", format="both", dtype="float32")


@pytest.fixture(scope="module")
def student(tiny_run_dir):
    return restore_student(tiny_run_dir)


def test_layouts(exported):
    merged, peft = exported / "merged", exported / "peft"
    for name in ("config.json", "generation_config.json", "tokenizer.json", "model.safetensors", "audio_embed.safetensors",
                 "aura_config.json"):
        assert (merged / name).exists(), name
    for name in ("adapter_config.json", "adapter_model.safetensors", "tokenizer.json", "audio_embed.safetensors"):
        assert (peft / name).exists(), name
    aura = json.loads((merged / "aura_config.json").read_text())
    assert aura["audio"]["num_audio_tokens"] == 300 and aura["lora"] == {
        "num_layers": 2, "rank": 8, "alpha": 16.0, "targets": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj",
                                                               "up_proj", "down_proj"], "positions": "all"}
    adapter = json.loads((peft / "adapter_config.json").read_text())
    assert adapter["layers_to_transform"] == [0, 1] and adapter["r"] == 8 and adapter["lora_alpha"] == 16.0


def test_merged_weights_are_base_plus_scaled_lora(exported, student, tiny_qwen2_dir):
    _, model, _ = student
    base, merged = SafetensorsDir(tiny_qwen2_dir), SafetensorsDir(exported / "merged")
    assert set(base.entries) == set(merged.entries)
    adapted = set()
    for i, name, module in lora_modules(model.llm):
        block = "self_attn" if name in ("q_proj", "k_proj", "v_proj", "o_proj") else "mlp"
        key = f"model.layers.{i}.{block}.{name}.weight"
        a, b = np.asarray(module.lora_a[...], np.float64), np.asarray(module.lora_b[...], np.float64)
        expected = np.asarray(base.get(key), np.float64) + (16.0 / 8) * (b.T @ a.T)  # torch: W + s·B_t A_t
        np.testing.assert_allclose(merged.get(key), expected, atol=1e-6)
        assert np.abs(b).max() > 0
        adapted.add(key)
    assert len(adapted) == 14
    for key in set(base.entries) - adapted:
        np.testing.assert_array_equal(merged.get(key), base.get(key))


def test_bf16_export_is_a_fp32_merge_then_cast(tiny_run_dir, tiny_qwen2_dir, student, tmp_path):
    out = export(tiny_run_dir, tiny_qwen2_dir, tmp_path / "bf16", format="merged", dtype="bfloat16")
    merged = SafetensorsDir(out)
    assert {info["dtype"] for _, info, _ in merged.entries.values()} == {"BF16"}
    ref = SafetensorsDir(tiny_qwen2_dir)
    module = student[1].llm.layers[0].self_attn.q_proj
    w = np.asarray(ref.get("model.layers.0.self_attn.q_proj.weight"), np.float32)
    fp32 = w + 2.0 * (np.asarray(module.lora_a[...]) @ np.asarray(module.lora_b[...])).T
    np.testing.assert_array_equal(merged.get("model.layers.0.self_attn.q_proj.weight"),
                                  fp32.astype(merged.get("model.layers.0.self_attn.q_proj.weight").dtype))


def test_transformers_and_peft_load_and_agree(exported, tiny_qwen2_dir):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    merged = AutoModelForCausalLM.from_pretrained(str(exported / "merged"), dtype=torch.float32).eval()
    base = AutoModelForCausalLM.from_pretrained(str(tiny_qwen2_dir), dtype=torch.float32)
    peft = PeftModel.from_pretrained(base, str(exported / "peft")).eval()
    ids = torch.as_tensor(np.random.default_rng(0).integers(0, 512, (2, 12)))
    with torch.no_grad():
        a, b = merged(ids).logits, peft(ids).logits
    assert (a - b).abs().max().item() <= 1e-4


def test_audio_embedding_matches_jax(exported, student):
    from aura_jax.torch import AuraSpeechLM

    _, model, _ = student
    lm = AuraSpeechLM.from_pretrained(exported)
    mel = np.random.default_rng(0).standard_normal((1, 128, 3000)).astype(np.float32)
    ours = np.asarray(model.audio_embed(mel))
    with torch.no_grad():
        theirs = lm.audio_embed(torch.as_tensor(mel)).numpy()
    np.testing.assert_allclose(theirs, ours, atol=1e-5)
    weights = load_numpy(str(exported / "merged" / "audio_embed.safetensors"))
    np.testing.assert_array_equal(weights["proj.weight"], np.asarray(model.audio_embed.proj.kernel[...]).T)


@pytest.mark.parametrize("variant", ["merged", "peft"])
def test_jax_run_and_export_give_the_same_logits(tiny_run_dir, exported, variant):
    from aura_jax.torch.export_parity import check_export_parity

    report = check_export_parity(tiny_run_dir, exported, variant=variant)
    assert report["tokens"] > 300 and report["max_abs_diff"] <= 1e-4


def test_generate_is_greedy_over_logits(exported):
    from aura_jax.synth import synthesize
    from aura_jax.torch import AuraSpeechLM

    lm = AuraSpeechLM.from_pretrained(exported)
    wave = synthesize("one two three")
    embeds, mask, _ = lm.prepare(wave, "Transcribe the speech.")
    with torch.no_grad():
        out = lm.model.generate(inputs_embeds=embeds, attention_mask=mask, max_new_tokens=3, do_sample=False,
                                min_new_tokens=3)
        step = lm.model(inputs_embeds=embeds, attention_mask=mask).logits[0, -1].argmax().item()
    assert out[0, 0].item() == step
    assert isinstance(lm.generate(wave, "Transcribe the speech.", max_new_tokens=3), str)


def test_cli_export_infer_and_parity(tiny_run_dir, tiny_qwen2_dir, tmp_path, capsys):
    out = tmp_path / "cli"
    assert main(["export", str(tiny_run_dir), "--base", str(tiny_qwen2_dir), "--out", str(out),
                 "--dtype", "float32"]) == 0
    clip = tmp_path / "clip.wav"
    import soundfile as sf

    from aura_jax.synth import synthesize

    sf.write(clip, synthesize("what is two plus two"), 16000)
    assert main(["infer", str(out), "--audio", str(clip), "--max-new-tokens", "3"]) == 0
    assert main(["check-parity", "--run", str(tiny_run_dir), "--exported", str(out)]) == 0
    assert main(["check-parity", "--run", str(tiny_run_dir), "--exported", str(out), "--tol", "1e-12"]) == 1
    text = capsys.readouterr().out
    assert "exported merged (float32)" in text and text.count("max_abs_diff=") == 2


def test_interrupted_export_leaves_nothing(tiny_run_dir, tiny_qwen2_dir, tmp_path, monkeypatch):
    import aura_jax.torch.export as ex

    def boom(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(ex, "_write_audio_and_config", boom)
    with pytest.raises(RuntimeError, match="disk full"):
        export(tiny_run_dir, tiny_qwen2_dir, tmp_path / "out", dtype="float32")
    assert os.listdir(tmp_path) == []


def test_reexport_replaces_a_complete_export_but_not_other_dirs(tiny_run_dir, tiny_qwen2_dir, tmp_path):
    from aura_jax.config import ConfigError

    out = export(tiny_run_dir, tiny_qwen2_dir, tmp_path / "out", format="peft")
    with pytest.raises(ConfigError, match="pass --overwrite to replace it"):  # never silently
        export(tiny_run_dir, tiny_qwen2_dir, out, format="peft")
    export(tiny_run_dir, tiny_qwen2_dir, out, format="peft", overwrite=True)
    assert sorted(os.listdir(tmp_path)) == ["out"]
    (tmp_path / "precious").mkdir()
    with pytest.raises(ConfigError, match="not a complete aura_jax export"):
        export(tiny_run_dir, tiny_qwen2_dir, tmp_path / "precious", format="peft", overwrite=True)


@pytest.mark.parametrize("format", ["merged", "peft", "both"])
def test_a_run_with_audio_only_adapters_is_refused_and_nothing_written(tiny_run_dir, tiny_qwen2_dir, tmp_path, format):
    """lora.audio_only: neither a merged kernel nor a PEFT adapter acts at the audio positions only; such a
    run exports as --format adapter (tests/torch/test_audio_only.py)."""
    from aura_jax.config import ConfigError

    with pytest.raises(ConfigError, match="lora.audio_only=true .* use --format adapter"):
        export(tiny_run_dir, tiny_qwen2_dir, tmp_path / "out", format=format, overrides=["lora.audio_only=true"])
    assert os.listdir(tmp_path) == []


def test_base_must_match_the_run(tiny_run_dir, tmp_path):
    from aura_jax import random_checkpoints as rc
    from aura_jax.hf import CheckpointError

    other = rc.make_qwen2(tmp_path / "other", num_hidden_layers=3)
    with pytest.raises(CheckpointError, match="num_hidden_layers"):
        export(tiny_run_dir, other, tmp_path / "out")


def test_sharded_base_keeps_its_shards_and_index(tiny_run_dir, tiny_qwen2_dir, tmp_path):
    from transformers import AutoModelForCausalLM

    sharded = tmp_path / "sharded-base"
    AutoModelForCausalLM.from_pretrained(str(tiny_qwen2_dir)).save_pretrained(str(sharded), max_shard_size="50KB")
    for name in ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja"):
        (sharded / name).write_bytes((tiny_qwen2_dir / name).read_bytes())
    out = export(tiny_run_dir, sharded, tmp_path / "out", dtype="float32")
    base_index = json.loads((sharded / "model.safetensors.index.json").read_text())
    out_index = json.loads((out / "model.safetensors.index.json").read_text())
    assert len(set(base_index["weight_map"].values())) > 1
    assert out_index["weight_map"] == base_index["weight_map"]
    assert out_index["metadata"]["total_size"] == sum(os.path.getsize(out / f) - 8 - _header_len(out / f)
                                                      for f in set(out_index["weight_map"].values()))
    merged = AutoModelForCausalLM.from_pretrained(str(out), dtype=torch.float32)
    single = AutoModelForCausalLM.from_pretrained(str(export(tiny_run_dir, tiny_qwen2_dir, tmp_path / "one",
                                                             dtype="float32")), dtype=torch.float32)
    ids = torch.as_tensor([[5, 6, 7, 8]])
    with torch.no_grad():
        assert torch.equal(merged(ids).logits, single(ids).logits)


def _header_len(path):
    import struct

    with open(path, "rb") as f:
        return struct.unpack("<Q", f.read(8))[0]
