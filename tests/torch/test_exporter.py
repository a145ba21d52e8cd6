"""`aura_jax.torch.export` and `aura_jax.torch.safetensors_io` against docs/EXPORT.md: the files
on disk, the merge arithmetic (independent numpy), JAX ↔ transformers ↔ PEFT logits
on text, sharded bases, bf16, atomicity and errors.

(Named test_exporter.py: tests/torch/test_export.py exists, and two test modules
with one basename break collection without __init__.py files.)"""

from __future__ import annotations

import json
import os
import shutil
import struct

import ml_dtypes
import numpy as np
import pytest
import torch

from aura_jax.config import ConfigError
from aura_jax.hf import CheckpointError, SafetensorsDir
from aura_jax.models.lora import lora_modules, merge_lora
from aura_jax.torch.export import export
from aura_jax.torch.safetensors_io import save_arrays, write_safetensors
from aura_jax.training.checkpoint import restore_student

BLOCK = {"q_proj": "self_attn", "k_proj": "self_attn", "v_proj": "self_attn", "o_proj": "self_attn",
         "gate_proj": "mlp", "up_proj": "mlp", "down_proj": "mlp"}
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja")


@pytest.fixture(scope="module")
def student(tiny_run_dir):
    return restore_student(tiny_run_dir)


@pytest.fixture(scope="module")
def both32(tiny_run_dir, tiny_qwen2_dir, tmp_path_factory):
    return export(tiny_run_dir, tiny_qwen2_dir, tmp_path_factory.mktemp("x32") / "out", format="both",
                  dtype="float32")


@pytest.fixture(scope="module")
def merged16(tiny_run_dir, tiny_qwen2_dir, tmp_path_factory):
    return export(tiny_run_dir, tiny_qwen2_dir, tmp_path_factory.mktemp("x16") / "out")  # defaults: merged, bf16


@pytest.fixture(scope="module")
def sharded_base(tiny_qwen2_dir, tmp_path_factory):
    """The fixture LLM's very weights, re-saved by transformers in ~50 KB shards."""
    from transformers import AutoModelForCausalLM

    out = tmp_path_factory.mktemp("sharded") / "base"
    AutoModelForCausalLM.from_pretrained(str(tiny_qwen2_dir), dtype=torch.float32).save_pretrained(
        str(out), max_shard_size="50KB")
    for name in TOKENIZER_FILES:
        shutil.copy(tiny_qwen2_dir / name, out / name)
    return out


def _header(path):
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        return n, json.loads(f.read(n))


def _adapted(student):
    _, model, _ = student
    return {f"model.layers.{i}.{BLOCK[name]}.{name}.weight": m for i, name, m in lora_modules(model.llm)}


def _numpy_merge(base_w, module, scale):
    """torch layout: W [out, in] + s·(A B)ᵀ, where ours are A [in, r], B [r, out]; float64 reference."""
    a, b = np.asarray(module.lora_a[...], np.float64), np.asarray(module.lora_b[...], np.float64)
    return np.asarray(base_w, np.float64) + scale * (a @ b).T


def _logits(model, ids):
    with torch.no_grad():
        return model(torch.as_tensor(ids)).logits.float().numpy()


# ---------------------------------------------------------------------------
# The writer
# ---------------------------------------------------------------------------
def test_writer_round_trips_every_dtype_and_aligns_the_data(tmp_path):
    from safetensors import safe_open

    rng = np.random.default_rng(0)
    arrays = {"z.bf16": rng.standard_normal((3, 5)).astype(ml_dtypes.bfloat16),
              "a.f32": rng.standard_normal((4, 2)).astype(np.float32),
              "m.f16": rng.standard_normal((7,)).astype(np.float16),
              "i.i64": np.arange(5, dtype=np.int64), "s.scalar": np.asarray(1.5, np.float32),
              "e.empty": np.zeros((0, 3), np.float32)}
    size = save_arrays(tmp_path / "t.safetensors", arrays, metadata={"format": "pt"})
    assert size == sum(a.nbytes for a in arrays.values())
    n, header = _header(tmp_path / "t.safetensors")
    assert n % 8 == 0 and header["__metadata__"] == {"format": "pt"}
    names = sorted(arrays)
    assert [k for k in header if k != "__metadata__"] == names  # written in name order, back to back
    assert [header[k]["data_offsets"] for k in names] == [
        [o, o + arrays[k].nbytes] for k, o in zip(names, np.cumsum([0] + [arrays[k].nbytes for k in names]))]
    assert header["z.bf16"]["dtype"] == "BF16" and header["m.f16"]["dtype"] == "F16"
    assert os.path.getsize(tmp_path / "t.safetensors") == 8 + n + size
    with safe_open(str(tmp_path / "t.safetensors"), framework="pt") as f:  # the reference reader
        for k, v in arrays.items():
            t = f.get_tensor(k)
            got = t.float().numpy() if t.dtype == torch.bfloat16 else t.numpy()
            np.testing.assert_array_equal(got, v.astype(np.float32) if v.dtype == ml_dtypes.bfloat16 else v)
    assert {str(t.dtype) for t in [safe_open(str(tmp_path / "t.safetensors"), "pt").get_tensor("z.bf16")]} == \
        {"torch.bfloat16"}


def test_writer_casts_to_the_declared_dtype_and_refuses_bad_entries(tmp_path):
    x = np.linspace(-1, 1, 6, dtype=np.float32).reshape(2, 3)
    write_safetensors(tmp_path / "c.safetensors", [("x", (2, 3), ml_dtypes.bfloat16, lambda: x)])
    n, header = _header(tmp_path / "c.safetensors")
    raw = (tmp_path / "c.safetensors").read_bytes()[8 + n:]
    np.testing.assert_array_equal(np.frombuffer(raw, ml_dtypes.bfloat16).reshape(2, 3), x.astype(ml_dtypes.bfloat16))
    with pytest.raises(ValueError, match=r"tensor 'x' has shape \(2, 3\), declared \(3, 2\)"):
        write_safetensors(tmp_path / "s.safetensors", [("x", (3, 2), np.float32, lambda: x)])
    with pytest.raises(ValueError, match="complex64"):
        save_arrays(tmp_path / "d.safetensors", {"x": x.astype(np.complex64)})


# ---------------------------------------------------------------------------
# merged
# ---------------------------------------------------------------------------
def test_merged_weights_are_the_numpy_merge_and_the_rest_is_the_base(both32, student, tiny_qwen2_dir):
    config = student[0]
    scale = config.lora.scale_alpha / config.lora.rank
    assert scale == 2.0
    merged, base = SafetensorsDir(both32 / "merged"), SafetensorsDir(tiny_qwen2_dir)
    assert not (both32 / "merged" / "model.safetensors.index.json").exists()  # single-file base stays single-file
    assert {m[0].name for m in merged.entries.values()} == {"model.safetensors"}
    assert set(merged.entries) == set(base.entries)
    assert {info["dtype"] for _, info, _ in merged.entries.values()} == {"F32"}
    adapted = _adapted(student)
    assert len(adapted) == 14 and {k.split(".")[2] for k in adapted} == {"0", "1"}
    for name, module in adapted.items():
        assert np.abs(np.asarray(module.lora_b[...])).max() > 0
        expected = _numpy_merge(base.get(name), module, scale)
        np.testing.assert_allclose(merged.get(name), expected, rtol=0, atol=1e-6, err_msg=name)
        assert np.abs(merged.get(name) - base.get(name)).max() > 1e-4  # the merge changed it
    for name in set(base.entries) - set(adapted):
        np.testing.assert_array_equal(merged.get(name), base.get(name), err_msg=name)


def test_transformers_loads_merged_and_matches_the_jax_merged_model(both32, tiny_run_dir, capsys):
    from transformers import AutoModelForCausalLM

    _, model, _ = restore_student(tiny_run_dir)  # fresh: merge_lora works in place
    merge_lora(model.llm)
    ids = np.random.default_rng(0).integers(0, 512, (2, 16))
    ours = np.asarray(model.llm(ids).logits, np.float32)
    hf = AutoModelForCausalLM.from_pretrained(str(both32 / "merged"), dtype=torch.float32).eval()
    theirs = _logits(hf, ids)
    diff = float(np.abs(ours - theirs).max())
    with capsys.disabled():
        print(f"\nmerged export vs JAX merge_lora: max abs logits diff {diff:.3g}")
    assert diff <= 1e-4
    assert np.abs(theirs).max() > 1  # not a degenerate comparison


def test_bf16_export_is_the_fp32_merge_cast(merged16, both32, tiny_qwen2_dir, student):
    bf, fp = SafetensorsDir(merged16), SafetensorsDir(both32 / "merged")
    assert {info["dtype"] for _, info, _ in bf.entries.values()} == {"BF16"}
    for name in fp.entries:  # adapted or not: bf16 == (float32 export).astype(bf16), bit for bit
        np.testing.assert_array_equal(bf.get(name).view(np.uint16),
                                      fp.get(name).astype(ml_dtypes.bfloat16).view(np.uint16), err_msg=name)
    # and not the merge done in bf16
    name, module = next(iter(_adapted(student).items()))
    w = SafetensorsDir(tiny_qwen2_dir).get(name).astype(ml_dtypes.bfloat16)
    delta = (np.asarray(module.lora_a[...]) @ np.asarray(module.lora_b[...])).T.astype(ml_dtypes.bfloat16)
    assert not np.array_equal((w + 2 * delta).astype(np.float32), bf.get(name).astype(np.float32))
    config = json.loads((merged16 / "config.json").read_text())
    assert config["dtype"] == config["torch_dtype"] == "bfloat16"
    assert json.loads((merged16 / "aura_config.json").read_text())["dtype"] == "bfloat16"


def test_side_files_are_copied(both32, tiny_qwen2_dir):
    base_config = json.loads((tiny_qwen2_dir / "config.json").read_text())
    config = json.loads((both32 / "merged" / "config.json").read_text())
    assert config.pop("dtype") == config.pop("torch_dtype") == "float32"
    base_config.pop("dtype", None), base_config.pop("torch_dtype", None)
    assert config == base_config
    for name in ("generation_config.json", *TOKENIZER_FILES):
        assert (both32 / "merged" / name).read_bytes() == (tiny_qwen2_dir / name).read_bytes(), name
    for name in TOKENIZER_FILES:
        assert (both32 / "peft" / name).read_bytes() == (tiny_qwen2_dir / name).read_bytes(), name
    assert sorted(os.listdir(both32)) == ["merged", "peft"]
    assert sorted(p for p in os.listdir(both32 / "peft") if not p.startswith("tokenizer") and
                  p != "chat_template.jinja") == ["adapter_config.json", "adapter_model.safetensors",
                                                  "audio_embed.safetensors", "aura_config.json"]


def test_sharded_base_keeps_its_shard_files_and_index(sharded_base, both32, tiny_run_dir, tmp_path):
    out = export(tiny_run_dir, sharded_base, tmp_path / "out", dtype="float32")
    base_index = json.loads((sharded_base / "model.safetensors.index.json").read_text())
    index = json.loads((out / "model.safetensors.index.json").read_text())
    shards = set(base_index["weight_map"].values())
    assert len(shards) > 2 and index["weight_map"] == base_index["weight_map"]
    assert {p for p in os.listdir(out) if p.endswith(".safetensors")} == shards | {"audio_embed.safetensors"}
    sizes = 0
    for shard in shards:
        _, header = _header(out / shard)
        _, base_header = _header(sharded_base / shard)
        assert set(header) - {"__metadata__"} == set(base_header) - {"__metadata__"}, shard
        sizes += sum(v["data_offsets"][1] - v["data_offsets"][0] for k, v in header.items() if k != "__metadata__")
    assert index["metadata"]["total_size"] == sizes
    merged, single = SafetensorsDir(out), SafetensorsDir(both32 / "merged")
    assert set(merged.entries) == set(single.entries)
    for name in single.entries:  # same weights, merged the same way, whatever the shard layout
        np.testing.assert_array_equal(merged.get(name), single.get(name), err_msg=name)


# ---------------------------------------------------------------------------
# peft
# ---------------------------------------------------------------------------
def test_peft_adapter_files(both32, student, tiny_qwen2_dir):
    peft_dir = both32 / "peft"
    adapter = json.loads((peft_dir / "adapter_config.json").read_text())
    assert {k: adapter[k] for k in ("peft_type", "task_type", "r", "lora_alpha", "layers_to_transform",
                                    "layers_pattern", "lora_dropout", "bias", "base_model_name_or_path")} == {
        "peft_type": "LORA", "task_type": "CAUSAL_LM", "r": 8, "lora_alpha": 16.0, "layers_to_transform": [0, 1],
        "layers_pattern": "layers", "lora_dropout": 0.0, "bias": "none",
        "base_model_name_or_path": str(tiny_qwen2_dir.absolute())}
    assert sorted(adapter["target_modules"]) == sorted(BLOCK)
    _, header = _header(peft_dir / "adapter_model.safetensors")
    tensors = {k: v for k, v in header.items() if k != "__metadata__"}
    assert len(tensors) == 28 and {v["dtype"] for v in tensors.values()} == {"F32"}
    from safetensors.numpy import load_file

    weights = load_file(str(peft_dir / "adapter_model.safetensors"))
    for name, module in _adapted(student).items():
        prefix = "base_model.model." + name[: -len(".weight")]
        a, b = weights[f"{prefix}.lora_A.weight"], weights[f"{prefix}.lora_B.weight"]
        assert a.shape == (8, module.base.in_features) and b.shape == (module.base.out_features, 8)
        np.testing.assert_array_equal(a, np.asarray(module.lora_a[...]).T)
        np.testing.assert_array_equal(b, np.asarray(module.lora_b[...]).T)


def test_peft_on_the_base_gives_the_merged_logits(both32, tiny_qwen2_dir, capsys):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    merged = AutoModelForCausalLM.from_pretrained(str(both32 / "merged"), dtype=torch.float32).eval()
    base = AutoModelForCausalLM.from_pretrained(str(tiny_qwen2_dir), dtype=torch.float32).eval()
    ids = np.random.default_rng(1).integers(0, 512, (2, 16))
    plain = _logits(base, ids)
    peft = PeftModel.from_pretrained(base, str(both32 / "peft")).eval()
    a, b = _logits(merged, ids), _logits(peft, ids)
    diff = float(np.abs(a - b).max())
    with capsys.disabled():
        print(f"\nPEFT (base + adapter) vs merged export: max abs logits diff {diff:.3g}")
    assert diff <= 1e-4
    assert np.abs(a - plain).max() > 1e-3  # the adapter really changes the model


# ---------------------------------------------------------------------------
# audio embedding and aura_config.json
# ---------------------------------------------------------------------------
def test_audio_embed_is_the_jax_patch_embedding(both32, student):
    from safetensors.numpy import load_file

    e = student[1].audio_embed
    expected = {"proj.weight": np.asarray(e.proj.kernel[...]).T, "proj.bias": np.asarray(e.proj.bias[...]),
                "norm.weight": np.asarray(e.norm.scale[...]), "norm.bias": np.asarray(e.norm.bias[...]),
                "positions": np.asarray(e.positions[...])}
    assert expected["proj.weight"].shape == (64, 128 * 10) and expected["positions"].shape == (300, 64)
    for kind in ("merged", "peft"):
        weights = load_file(str(both32 / kind / "audio_embed.safetensors"))
        assert set(weights) == set(expected)
        for k, v in expected.items():
            assert weights[k].dtype == np.float32
            np.testing.assert_array_equal(weights[k], v, err_msg=f"{kind}: {k}")


def test_aura_config_fields(both32, student, tiny_qwen2_dir, tiny_run_dir):
    from tokenizers import Tokenizer

    config, _, step = student
    audio_id = Tokenizer.from_file(str(tiny_qwen2_dir / "tokenizer.json")).token_to_id("<|audio|>")
    assert step == 3 and audio_id is not None
    for kind, dtype in (("merged", "float32"), ("peft", "float32")):
        aura = json.loads((both32 / kind / "aura_config.json").read_text())
        assert aura == {
            "format": "aura_jax.export/1", "kind": kind, "step": 3, "base_model": str(tiny_qwen2_dir.absolute()),
            "dtype": dtype,
            "audio": {"sampling_rate": 16000, "n_mels": 128, "num_frames": 3000, "patch_frames": 10,
                      "num_audio_tokens": 300, "layer_norm_eps": 1e-5, "buckets": [3000]},
            "audio_token": "<|audio|>", "audio_token_id": audio_id,
            "prompt": {"system": config.prompt.system, "asr_instruction": config.prompt.asr_instruction},
            "lora": {"num_layers": 2, "rank": 8, "alpha": 16.0, "targets": list(config.lora.targets),
                     "positions": "all"},
            "bidirectional_audio": config.distill.bidirectional_audio,
            "bidirectional_chunk": config.distill.bidirectional_chunk,
            "run_dir": str(tiny_run_dir.absolute())}
        assert isinstance(aura["prompt"]["system"], str) and aura["prompt"]["asr_instruction"]


# ---------------------------------------------------------------------------
# Atomicity
# ---------------------------------------------------------------------------
def test_a_failure_midway_leaves_neither_out_nor_the_temp_dir(sharded_base, tiny_run_dir, tmp_path, monkeypatch):
    import aura_jax.torch.export as ex

    calls = []

    def flaky(path, *args, **kwargs):
        calls.append(path)
        if len(calls) == 2:  # the second shard: one file already written
            assert os.path.exists(calls[0])
            raise OSError("No space left on device")
        return write_safetensors(path, *args, **kwargs)

    monkeypatch.setattr(ex, "write_safetensors", flaky)
    with pytest.raises(OSError, match="No space left"):
        export(tiny_run_dir, sharded_base, tmp_path / "out", dtype="float32")
    assert len(calls) == 2 and os.listdir(tmp_path) == []


def test_reexport_is_refused_without_overwrite_and_replaces_with_it(both32, tiny_run_dir, tiny_qwen2_dir, tmp_path,
                                                                     monkeypatch, capsys):
    from aura_jax import cli
    from aura_jax.training import checkpoint

    out = tmp_path / "out"
    shutil.copytree(both32, out)  # a complete "both" export
    (out / "stale-file").write_text("from the earlier export")
    with monkeypatch.context() as m:  # refused before the run is restored
        m.setattr(checkpoint, "restore_student", lambda *a, **k: pytest.fail("restored before refusing"))
        with pytest.raises(ConfigError) as e:
            export(tiny_run_dir, tiny_qwen2_dir, out, format="peft")
    assert str(e.value) == (f"{out} exists (an export of {tiny_run_dir.absolute()} step 3); "
                            f"pass --overwrite to replace it")
    assert (out / "stale-file").read_text() == "from the earlier export"  # the earlier export is intact
    assert sorted(os.listdir(out)) == ["merged", "peft", "stale-file"] and sorted(os.listdir(tmp_path)) == ["out"]

    assert cli.main(["export", str(tiny_run_dir), "--out", str(out), "--format", "peft", "--overwrite"]) == 0
    stdout = capsys.readouterr().out
    assert f"replaced {out} (an export of {tiny_run_dir.absolute()} step 3)" in stdout
    assert f"exported peft (float32) of {tiny_run_dir} step 3 onto {tiny_qwen2_dir.absolute()} to {out}" in stdout
    assert sorted(os.listdir(tmp_path)) == ["out"]  # no temp or old dir left behind
    assert not (out / "stale-file").exists() and not (out / "merged").exists()
    assert json.loads((out / "aura_config.json").read_text())["kind"] == "peft"

    half = tmp_path / "half"  # a "both" export whose peft half never finished is not complete
    shutil.copytree(both32, half)
    (half / "peft" / "aura_config.json").unlink()
    (tmp_path / "precious").mkdir()
    (tmp_path / "precious" / "notes.txt").write_text("keep me")
    for target in (half, tmp_path / "precious"):  # --overwrite replaces exports, never anything else
        with pytest.raises(ConfigError, match=f"--out {target} exists and is not a complete aura_jax export"):
            export(tiny_run_dir, tiny_qwen2_dir, target, format="peft", overwrite=True)
    assert (tmp_path / "precious" / "notes.txt").read_text() == "keep me"
    assert sorted(os.listdir(tmp_path)) == ["half", "out", "precious"]


# ---------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------
def test_errors_name_what_is_wrong(tiny_run_dir, tiny_qwen2_dir, tiny_whisper_dir, tmp_path):
    out = tmp_path / "out"
    with pytest.raises(ConfigError, match="--format 'onnx': use one of merged, peft, both"):
        export(tiny_run_dir, tiny_qwen2_dir, out, format="onnx")
    with pytest.raises(ConfigError, match="--dtype 'int8'"):
        export(tiny_run_dir, tiny_qwen2_dir, out, dtype="int8")
    missing = tmp_path / "no-such-model"
    with pytest.raises(CheckpointError, match=f"{missing}: model directory does not exist"):
        export(tiny_run_dir, missing, out)
    with pytest.raises(CheckpointError, match=f"{tiny_whisper_dir / 'config.json'}: --base must be a Qwen2"):
        export(tiny_run_dir, tiny_whisper_dir, out)
    no_ckpt = tmp_path / "run-without-checkpoints"
    no_ckpt.mkdir()
    shutil.copy(tiny_run_dir / "config.yaml", no_ckpt / "config.yaml")
    with pytest.raises(ConfigError, match=f"{no_ckpt / 'checkpoints'}: no checkpoint to restore"):
        export(no_ckpt, tiny_qwen2_dir, out)
    with pytest.raises(ConfigError, match=f"{tmp_path}: not a training run directory"):
        export(tmp_path, tiny_qwen2_dir, out)
    with pytest.raises(ConfigError, match=r"no checkpoint for step 7 \(have \[3\]\)"):
        export(tiny_run_dir, tiny_qwen2_dir, out, step=7)
    assert sorted(os.listdir(tmp_path)) == ["run-without-checkpoints"]


def test_a_base_that_is_not_the_runs_llm_is_refused(tiny_run_dir, tiny_qwen2_dir, tmp_path):
    from safetensors.numpy import load_file, save_file

    from aura_jax import random_checkpoints as rc

    other = rc.make_qwen2(tmp_path / "deeper", num_hidden_layers=5)
    with pytest.raises(CheckpointError, match=rf"--base {other} is not the LLM the run {tiny_run_dir} trained on "
                                              rf"\({tiny_qwen2_dir}\): config.json differs: num_hidden_layers is 5"):
        export(tiny_run_dir, other, tmp_path / "out")
    # Same architecture, one frozen tensor of the last layer nudged: a different model.
    tweaked = tmp_path / "tweaked"
    shutil.copytree(tiny_qwen2_dir, tweaked)
    weights = load_file(str(tweaked / "model.safetensors"))
    weights["model.layers.3.mlp.down_proj.weight"][0, 0] += 0.01
    save_file(weights, str(tweaked / "model.safetensors"), metadata={"format": "pt"})
    with pytest.raises(CheckpointError, match=rf"--base {tweaked} is not the LLM .* \({tiny_qwen2_dir}\): the "
                                              r"frozen weights differ, e.g. 'model.layers.3.mlp.down_proj.weight'"):
        export(tiny_run_dir, tweaked, tmp_path / "out")
    no_tok = tmp_path / "no-tokenizer"
    shutil.copytree(tiny_qwen2_dir, no_tok)
    (no_tok / "tokenizer.json").unlink()
    with pytest.raises(CheckpointError, match=f"{no_tok / 'tokenizer.json'}: missing"):
        export(tiny_run_dir, no_tok, tmp_path / "out")
    assert sorted(os.listdir(tmp_path)) == ["deeper", "no-tokenizer", "tweaked"]


def test_cli_entry_points(tiny_run_dir, tiny_qwen2_dir, tmp_path, capsys):
    import argparse

    from aura_jax.torch.export import add_export_arguments, export_main

    parser = argparse.ArgumentParser()
    add_export_arguments(parser)
    args = parser.parse_args([str(tiny_run_dir), "--base", str(tiny_qwen2_dir), "--out", str(tmp_path / "o"),
                              "--format", "peft", "--step", "3"])
    assert (args.format, args.dtype, args.step) == ("peft", "bfloat16", 3)
    assert export_main(args) == 0
    assert (tmp_path / "o" / "aura_config.json").exists() and "exported peft" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        parser.parse_args([str(tiny_run_dir), "--base", "b", "--out", "o", "--format", "gguf"])
    args = parser.parse_args(["run", "model.llm=/abs/llm", "steps=4", "--out", "o"])  # --base is optional
    assert (args.run_dir, args.overrides, args.base, args.overwrite) == ("run", ["model.llm=/abs/llm", "steps=4"],
                                                                         None, False)


# ---------------------------------------------------------------------------
# Issue 12: changed configs, recorded paths, and what `infer` / `check-parity` are given
# ---------------------------------------------------------------------------
def _copy_run(src, dst, **edits):
    """A copy of a run directory with config.yaml keys edited ("lora.rank": 4)."""
    import yaml

    shutil.copytree(src, dst)
    config = yaml.safe_load((dst / "config.yaml").read_text())
    for key, value in edits.items():
        section, name = key.split("__")
        config[section][name] = value
    (dst / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    return dst


def test_lora_arrays_that_disagree_with_the_config_are_refused(student, tiny_run_dir, tiny_qwen2_dir, tmp_path):
    import copy

    from aura_jax.torch.export import write_merged, write_peft

    config, model, step = student
    assert config.lora.rank == 8 and config.lora.num_layers == 2
    for edit, expected in (
            ({"rank": 4}, "lora.rank is 4 in the config, 8 in the checkpoint (lora_A of layers.0.q_proj is [8, 64])"),
            ({"num_layers": 3}, "lora.num_layers is 3 in the config, the checkpoint adapts layers [0, 1]"),
            ({"targets": ["q_proj", "v_proj"]}, "lora.targets is ['q_proj', 'v_proj'] in the config, ['down_proj', "
                                                "'gate_proj', 'k_proj', 'o_proj', 'q_proj', 'up_proj', 'v_proj'] "
                                                "in the checkpoint")):
        edited = copy.deepcopy(config)
        for k, v in edit.items():
            setattr(edited.lora, k, v)
        for write, args in ((write_peft, (step, 1)), (write_merged, ("float32", step, 1))):
            with pytest.raises(ConfigError) as e:
                write(model, edited, tiny_qwen2_dir, tmp_path / "out", *args, run_dir=tiny_run_dir)
            msg = str(e.value)
            assert msg.startswith(f"{tiny_run_dir}: the restored LoRA arrays do not match "
                                  f"{tiny_run_dir / 'config.yaml'}: {expected}. Was config.yaml edited"), msg
            assert ("override lora.rank=8" in msg) == ("rank" in edit)
            assert not (tmp_path / "out").exists()

    # End to end: config.yaml edited after training (lora.rank 8 → 4). Whichever check speaks first
    # (restore_student's shape check, or the exporter's), it is a ConfigError and nothing is written.
    run = _copy_run(tiny_run_dir, tmp_path / "edited-run", lora__rank=4)
    with pytest.raises(ConfigError) as e:
        export(run, tiny_qwen2_dir, tmp_path / "out", format="peft")
    assert "lora" in str(e.value).lower() and "config.yaml" in str(e.value) and "\n" not in str(e.value)
    assert sorted(os.listdir(tmp_path)) == ["edited-run"]


def test_export_defaults_base_to_the_runs_backbone_and_takes_overrides(tiny_run_dir, tiny_qwen2_dir, tmp_path,
                                                                      monkeypatch, capsys):
    from aura_jax import cli

    # --base omitted: the run's recorded model.llm
    assert cli.main(["export", str(tiny_run_dir), "--out", str(tmp_path / "a"), "--format", "peft"]) == 0
    assert f"onto {tiny_qwen2_dir.absolute()} to {tmp_path / 'a'}" in capsys.readouterr().out
    adapter = json.loads((tmp_path / "a" / "adapter_config.json").read_text())
    assert adapter["base_model_name_or_path"] == str(tiny_qwen2_dir.absolute()) and adapter["r"] == 8

    # A run whose recorded (relative) paths do not resolve from here. The run's config asks for
    # random checkpoints where they are missing (model.random_init=tiny): export must not build any.
    monkeypatch.chdir(tmp_path)
    moved = _copy_run(tiny_run_dir, tmp_path / "moved", model__llm="cache/llm", model__teacher="cache/whisper")
    assert cli.main(["export", str(moved), "--out", str(tmp_path / "b")]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err == (f"aura-jax export: error: {moved / 'config.yaml'}: the run's backbone "
                                 f"model.llm=cache/llm does not exist (from {tmp_path}); pass --base DIR (the "
                                 f"Hugging Face directory the run trained on) or the override model.llm=DIR\n")
    # ... fixed by an override of the recorded path
    assert cli.main(["export", str(moved), f"model.llm={tiny_qwen2_dir}", "--out", str(tmp_path / "b"),
                     "--format", "peft"]) == 0
    assert f"exported peft (float32) of {moved} step 3 onto {tiny_qwen2_dir} to {tmp_path / 'b'}" in \
        capsys.readouterr().out
    # ... or by --base, which then stands in for the missing backbone (and says so)
    assert cli.main(["export", str(moved), "--base", str(tiny_qwen2_dir), "--out", str(tmp_path / "c"),
                     "--format", "peft"]) == 0
    assert (f"the run's backbone model.llm=cache/llm does not exist here; restoring the run onto --base "
            f"{tiny_qwen2_dir}") in capsys.readouterr().out
    for d in ("b", "c"):
        assert json.loads((tmp_path / d / "aura_config.json").read_text())["base_model"] == str(tiny_qwen2_dir)
        assert (tmp_path / d / "adapter_model.safetensors").read_bytes() == \
            (tmp_path / "a" / "adapter_model.safetensors").read_bytes()
    assert not (tmp_path / "cache").exists()  # no random checkpoints built
    assert sorted(os.listdir(tmp_path)) == ["a", "b", "c", "moved"]


def test_infer_and_check_parity_refuse_a_missing_audio_file_before_loading(both32, tiny_run_dir, tmp_path, capsys):
    from aura_jax import cli

    missing = tmp_path / "no-such.wav"
    for argv in (["infer", str(both32), "--audio", str(missing)],
                 ["infer", str(both32), "--audio", str(tmp_path)],
                 ["check-parity", "--run", str(tiny_run_dir), "--exported", str(both32), "--audio", str(missing)]):
        assert cli.main(argv) == 2
        out, err = capsys.readouterr()
        what = "is a directory, not an audio file" if argv[3] == str(tmp_path) else "no such file"
        assert out == "" and err == f"aura-jax {argv[0]}: error: --audio {argv[-1]}: {what}\n", err
    half = tmp_path / "half"  # a "both" export whose peft half never finished
    shutil.copytree(both32, half)
    (half / "peft" / "aura_config.json").unlink()
    assert cli.main(["infer", str(half), "--variant", "peft", "--audio", str(missing)]) == 2
    assert capsys.readouterr().err == (
        f"aura-jax infer: error: {half / 'peft'}: an incomplete export (no aura_config.json; was the export "
        f"interrupted?); export the run again with `aura-jax export RUN_DIR --out {half} --overwrite`\n")

