"""Loading Hugging Face directories into NNX (`aura_jax.hf`).

Every way a directory can be unusable fails at once with one `CheckpointError`
(a ValueError) whose message names the file (and tensor, where there is one);
sharded, bf16 and both Whisper layouts load; the key table maps every
parameter to exactly one checkpoint tensor and back.
"""

from __future__ import annotations

import collections
import json
import re
import shutil
import struct

import jax.numpy as jnp
import ml_dtypes
import numpy as np
import pytest
import torch
from flax import nnx
from safetensors.numpy import load_file, save_file
from safetensors.torch import load_file as load_file_torch

from aura_jax import hf
from aura_jax import random_checkpoints as rc
from aura_jax.hf import CheckpointError, from_pretrained
from aura_jax.models.qwen2 import Qwen2Config, Qwen2ForCausalLM
from aura_jax.models.whisper import WhisperEncoder, WhisperEncoderConfig


# ---------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------
def copy_dir(src, tmp_path, name="copy"):
    dst = tmp_path / name
    shutil.copytree(src, dst)
    return dst


def edit_config(directory, **changes):
    path = directory / "config.json"
    config = json.loads(path.read_text())
    config.update(changes)
    path.write_text(json.dumps(config))
    return config


def rewrite_without(directory, drop):
    """Rewrite model.safetensors keeping every tensor whose name `drop` rejects."""
    path = directory / "model.safetensors"
    tensors = load_file(str(path))
    kept = {k: v for k, v in tensors.items() if not drop(k)}
    assert len(kept) < len(tensors), "the filter removed nothing: the test would prove nothing"
    save_file(kept, str(path), metadata={"format": "pt"})
    return sorted(set(tensors) - set(kept))


def params(model) -> dict[str, np.ndarray]:
    return {hf.nnx_path(path): np.asarray(var[...]) for path, var in nnx.iter_graph(model)
            if isinstance(var, nnx.Variable)}


def param_paths(model) -> list[str]:
    return [hf.nnx_path(path) for path, var in nnx.iter_graph(model) if isinstance(var, nnx.Variable)]


def qwen2_logits(model, vocab_size, seed=0):
    ids = np.random.default_rng(seed).integers(0, vocab_size, (2, 9))
    return ids, np.asarray(model(jnp.asarray(ids)).logits)


# ---------------------------------------------------------------------------
# Unusable directories: one CheckpointError naming the file
# ---------------------------------------------------------------------------
def test_checkpoint_error_is_a_value_error():
    assert issubclass(CheckpointError, ValueError)


def test_missing_directory_names_the_directory(tmp_path):
    missing = tmp_path / "no-such-model"
    with pytest.raises(CheckpointError, match=re.escape(str(missing))):
        from_pretrained(missing)


def test_directory_without_config_json_names_config_json(tmp_path, tiny_qwen2_dir):
    d = copy_dir(tiny_qwen2_dir, tmp_path)
    (d / "config.json").unlink()
    with pytest.raises(CheckpointError, match=re.escape(str(d / "config.json"))):
        from_pretrained(d)


def test_config_json_that_is_not_json_names_the_file(tmp_path, tiny_qwen2_dir):
    d = copy_dir(tiny_qwen2_dir, tmp_path)
    (d / "config.json").write_text("{not json")
    with pytest.raises(CheckpointError, match=re.escape(str(d / "config.json"))):
        from_pretrained(d)


def test_unsupported_model_type_names_config_json_and_the_type(tmp_path, tiny_qwen2_dir):
    d = copy_dir(tiny_qwen2_dir, tmp_path)
    edit_config(d, model_type="mistral")
    with pytest.raises(CheckpointError) as e:
        from_pretrained(d)
    assert str(d / "config.json") in str(e.value)
    assert "mistral" in str(e.value)


def test_a_qwen2_relabelled_llama_keeps_no_bias_silently(tmp_path, tiny_qwen2_dir):
    d = copy_dir(tiny_qwen2_dir, tmp_path)
    edit_config(d, model_type="llama")  # Llama has no q/k/v biases; this checkpoint does
    with pytest.raises(CheckpointError, match=r"config.json: says no attention biases .*_proj.bias"):
        from_pretrained(d)


def test_config_json_missing_a_required_field_names_the_file_and_field(tmp_path, tiny_qwen2_dir):
    d = copy_dir(tiny_qwen2_dir, tmp_path)
    config = json.loads((d / "config.json").read_text())
    del config["hidden_size"]
    (d / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError) as e:
        from_pretrained(d)
    assert str(d / "config.json") in str(e.value)
    assert "hidden_size" in str(e.value)


def test_unsupported_rope_type_is_a_checkpoint_error_naming_config_json(tmp_path, tiny_qwen2_dir):
    d = copy_dir(tiny_qwen2_dir, tmp_path)
    edit_config(d, rope_parameters={"rope_type": "yarn", "rope_theta": 10000.0, "factor": 4.0})
    with pytest.raises(CheckpointError) as e:
        from_pretrained(d)
    assert str(d / "config.json") in str(e.value)
    assert "yarn" in str(e.value)


def test_missing_tensor_names_the_tensor_and_the_directory(tmp_path, tiny_qwen2_dir):
    d = copy_dir(tiny_qwen2_dir, tmp_path)
    name = "model.layers.1.mlp.up_proj.weight"
    assert rewrite_without(d, lambda k: k == name) == [name]
    with pytest.raises(CheckpointError) as e:
        from_pretrained(d)
    assert repr(name) in str(e.value)
    assert str(d) in str(e.value)


def test_shape_mismatch_names_the_tensor_the_file_and_both_shapes(tmp_path, tiny_qwen2_dir):
    d = copy_dir(tiny_qwen2_dir, tmp_path)
    old = json.loads((d / "config.json").read_text())["intermediate_size"]
    new = old // 2 + 8
    edit_config(d, intermediate_size=new)
    with pytest.raises(CheckpointError) as e:
        from_pretrained(d)
    message = str(e.value)
    assert str(d / "model.safetensors") in message
    tensor = re.search(r"tensor '([^']+)'", message).group(1)
    assert re.fullmatch(r"model\.layers\.\d+\.mlp\.(gate|up|down)_proj\.weight", tensor), message
    on_disk = load_file(str(d / "model.safetensors"))[tensor].shape
    implied = tuple(new if s == old else s for s in on_disk)
    assert str(tuple(on_disk)) in message
    assert str(implied) in message


def test_no_safetensors_file_says_bin_checkpoints_are_not_supported(tmp_path, tiny_qwen2_dir):
    d = tmp_path / "bin-only"
    d.mkdir()
    shutil.copy(tiny_qwen2_dir / "config.json", d / "config.json")
    (d / "pytorch_model.bin").write_bytes(b"\0" * 16)
    with pytest.raises(CheckpointError) as e:
        from_pretrained(d)
    assert str(d) in str(e.value)
    assert ".bin" in str(e.value)


def _header(obj) -> bytes:
    raw = json.dumps(obj).encode() if not isinstance(obj, bytes) else obj
    return struct.pack("<Q", len(raw)) + raw


CORRUPTIONS = {
    "shorter-than-length-prefix": lambda data: b"abc",
    "garbage-bytes": lambda data: b"this is not a safetensors file at all " * 4,
    "header-not-json": lambda data: _header(b'{"model.norm.weight": '),
    "header-not-a-mapping": lambda data: _header([1, 2, 3]),
    "header-length-beyond-file": lambda data: struct.pack("<Q", len(data) * 2) + data[8:],
    "data-truncated": lambda data: data[: len(data) // 2],
}


@pytest.mark.parametrize("kind", sorted(CORRUPTIONS))
def test_corrupt_safetensors_file_names_the_file(tmp_path, tiny_qwen2_dir, kind):
    d = copy_dir(tiny_qwen2_dir, tmp_path)
    path = d / "model.safetensors"
    path.write_bytes(CORRUPTIONS[kind](path.read_bytes()))
    with pytest.raises(CheckpointError, match=re.escape(str(path))):
        from_pretrained(d)


# ---------------------------------------------------------------------------
# Sharded and bf16 checkpoints
# ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def sharded_qwen2_dir(tmp_path_factory, tiny_qwen2_dir):
    """The tiny Qwen2's weights (same seed), saved in 50 KB shards."""
    return rc.make_qwen2(tmp_path_factory.mktemp("sharded-qwen2"), max_shard_size="50KB", with_tokenizer=False)


def test_sharded_checkpoint_has_an_index_and_several_shards(sharded_qwen2_dir):
    assert (sharded_qwen2_dir / "model.safetensors.index.json").exists()
    assert not (sharded_qwen2_dir / "model.safetensors").exists()
    assert len(list(sharded_qwen2_dir.glob("model-*.safetensors"))) > 1


def test_sharded_checkpoint_loads_equal_to_single_file_and_to_transformers(sharded_qwen2_dir, tiny_qwen2_dir):
    single_tensors = load_file(str(tiny_qwen2_dir / "model.safetensors"))
    sharded_tensors = {}
    for shard in sharded_qwen2_dir.glob("model-*.safetensors"):
        sharded_tensors.update(load_file(str(shard)))
    assert sharded_tensors.keys() == single_tensors.keys()
    assert all(np.array_equal(sharded_tensors[k], single_tensors[k]) for k in single_tensors), \
        "same seed should give the same weights; the comparison below would be meaningless"

    sharded, single = from_pretrained(sharded_qwen2_dir), from_pretrained(tiny_qwen2_dir)
    ids, logits = qwen2_logits(sharded, sharded.config.vocab_size)
    _, single_logits = qwen2_logits(single, single.config.vocab_size)
    np.testing.assert_array_equal(logits, single_logits)

    from transformers import Qwen2ForCausalLM as TorchQwen2

    torch_model = TorchQwen2.from_pretrained(str(sharded_qwen2_dir), dtype=torch.float32).eval()
    with torch.no_grad():
        ref = torch_model(torch.as_tensor(ids)).logits.numpy()
    assert np.abs(logits - ref).max() <= 1e-4


def test_index_listing_a_missing_shard_names_the_shard(tmp_path, sharded_qwen2_dir):
    d = copy_dir(sharded_qwen2_dir, tmp_path)
    shard = sorted(d.glob("model-*.safetensors"))[-1]
    shard.unlink()
    with pytest.raises(CheckpointError, match=re.escape(str(shard))):
        from_pretrained(d)


def test_index_that_is_not_json_names_the_index(tmp_path, sharded_qwen2_dir):
    d = copy_dir(sharded_qwen2_dir, tmp_path)
    index = d / "model.safetensors.index.json"
    index.write_text("{")
    with pytest.raises(CheckpointError, match=re.escape(str(index))):
        from_pretrained(d)


@pytest.fixture(scope="module")
def bf16_qwen2_dir(tmp_path_factory):
    return rc.make_qwen2(tmp_path_factory.mktemp("bf16-qwen2"), dtype="bfloat16", num_hidden_layers=2,
                         with_tokenizer=False)


def _bf16_reference(directory) -> dict[str, np.ndarray]:
    """Each parameter's expected value in NNX layout, as stored (bf16 bits, read with torch)."""
    tensors = load_file_torch(str(directory / "model.safetensors"))
    assert all(t.dtype == torch.bfloat16 for t in tensors.values()), "the fixture should be a bf16 checkpoint"
    model = nnx.eval_shape(lambda: Qwen2ForCausalLM(
        Qwen2Config.from_hf(json.loads((directory / "config.json").read_text())), rngs=nnx.Rngs(0)))
    out = {}
    for path in param_paths(model):
        name, transform = hf.hf_name(path, hf.QWEN2_RULES)
        bits = tensors[name].view(torch.int16).numpy()
        out[path] = hf.TO_NNX[transform](bits.view(ml_dtypes.bfloat16))
    return out


def test_bf16_checkpoint_loads_as_float32_with_the_exact_upcast_values(bf16_qwen2_dir):
    model = from_pretrained(bf16_qwen2_dir, dtype="float32")
    expected = _bf16_reference(bf16_qwen2_dir)
    got = params(model)
    assert got.keys() == expected.keys()
    for path, value in got.items():
        assert value.dtype == np.float32, path
        np.testing.assert_array_equal(value, expected[path].astype(np.float32), err_msg=path)


def test_bf16_checkpoint_loads_as_bfloat16_params(bf16_qwen2_dir):
    model = from_pretrained(bf16_qwen2_dir, dtype="bfloat16")
    expected = _bf16_reference(bf16_qwen2_dir)
    for path, value in params(model).items():
        assert value.dtype == jnp.bfloat16, path
        np.testing.assert_array_equal(value.view(np.uint16), expected[path].view(np.uint16), err_msg=path)
    ids = jnp.zeros((1, 4), jnp.int32)
    assert np.isfinite(np.asarray(model(ids).logits, np.float32)).all()


def test_invalid_dtype_is_a_clear_error(tiny_qwen2_dir):
    with pytest.raises(CheckpointError, match="float33"):
        from_pretrained(tiny_qwen2_dir, dtype="float33")


# ---------------------------------------------------------------------------
# Whisper: both layouts, truncated encoders
# ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def whisper_model_layout_dir(tmp_path_factory, tiny_whisper_dir):
    """The tiny Whisper re-saved as a bare `transformers.WhisperModel` (tensors prefixed `encoder.`)."""
    from transformers import WhisperModel

    out = tmp_path_factory.mktemp("whisper-model-layout")
    WhisperModel.from_pretrained(str(tiny_whisper_dir), dtype=torch.float32).save_pretrained(str(out))
    return out


def test_whisper_model_and_conditional_generation_layouts_load_the_same_encoder(
        whisper_model_layout_dir, tiny_whisper_dir):
    keys = load_file(str(whisper_model_layout_dir / "model.safetensors")).keys()
    assert "encoder.conv1.weight" in keys and not any(k.startswith("model.") for k in keys)
    assert "model.encoder.conv1.weight" in load_file(str(tiny_whisper_dir / "model.safetensors"))

    bare, full = params(from_pretrained(whisper_model_layout_dir)), params(from_pretrained(tiny_whisper_dir))
    assert bare.keys() == full.keys()
    for path in full:
        np.testing.assert_array_equal(bare[path], full[path], err_msg=path)


def test_directory_without_whisper_encoder_tensors_is_a_clear_error(tmp_path, tiny_whisper_dir):
    d = copy_dir(tiny_whisper_dir, tmp_path)
    rewrite_without(d, lambda k: k.startswith("model.encoder."))
    with pytest.raises(CheckpointError, match=re.escape(str(d))):
        from_pretrained(d)


def test_truncated_encoder_reads_only_its_layers(tmp_path, tiny_whisper_dir):
    depth = json.loads((tiny_whisper_dir / "config.json").read_text())["encoder_layers"]
    n = 2
    assert depth > n
    d = copy_dir(tiny_whisper_dir, tmp_path)
    dropped = rewrite_without(d, lambda k: k.startswith("model.encoder.layer_norm.") or any(
        k.startswith(f"model.encoder.layers.{i}.") for i in range(n, depth)))
    assert any(".layers.2." in k for k in dropped)

    with pytest.raises(CheckpointError, match=r"model\.encoder\.(layers\.[2-9]|layer_norm)"):
        from_pretrained(d)  # the full encoder really needs what was deleted

    truncated = from_pretrained(d, num_layers=n)
    assert len(truncated.layers) == n and truncated.layer_norm is None
    full = params(from_pretrained(tiny_whisper_dir))
    for path, value in params(truncated).items():
        np.testing.assert_array_equal(value, full[path], err_msg=path)


@pytest.mark.parametrize("num_layers", [0, "depth+1"])
def test_truncation_outside_the_encoder_depth_is_a_clear_error(tiny_whisper_dir, num_layers):
    depth = json.loads((tiny_whisper_dir / "config.json").read_text())["encoder_layers"]
    n = depth + 1 if num_layers == "depth+1" else num_layers
    with pytest.raises(CheckpointError) as e:
        from_pretrained(tiny_whisper_dir, num_layers=n)
    message = str(e.value)
    assert str(tiny_whisper_dir) in message
    rest = message.replace(str(tiny_whisper_dir), "")  # the path may contain digits
    assert f"num_layers={n}" in rest and re.search(rf"\b{depth}\b", rest)


# ---------------------------------------------------------------------------
# The key table: every parameter ↔ exactly one checkpoint tensor
# ---------------------------------------------------------------------------
def _abstract_qwen2(directory):
    config = Qwen2Config.from_hf(json.loads((directory / "config.json").read_text()))
    return nnx.eval_shape(lambda: Qwen2ForCausalLM(config, rngs=nnx.Rngs(0)))


def _abstract_whisper(directory, num_layers=None):
    config = WhisperEncoderConfig.from_hf(json.loads((directory / "config.json").read_text()))
    return nnx.eval_shape(lambda: WhisperEncoder(config, num_layers=num_layers, rngs=nnx.Rngs(0)))


def _check_key_table(model, tensors, rules, prefix, skipped):
    """Each parameter maps to a present tensor of the right shape; each tensor not in `skipped` is used once."""
    used = collections.Counter()
    for path, var in nnx.iter_graph(model):
        if not isinstance(var, nnx.Variable):
            continue
        dotted = hf.nnx_path(path)
        name, transform = hf.hf_name(dotted, rules, prefix)
        assert name in tensors, f"{dotted} → {name} not in the checkpoint"
        assert hf.TO_NNX[transform](tensors[name]).shape == tuple(var.shape), dotted
        # export direction: FROM_NNX undoes TO_NNX exactly
        np.testing.assert_array_equal(hf.FROM_NNX[transform](hf.TO_NNX[transform](tensors[name])), tensors[name])
        used[name] += 1
    assert [n for n, c in used.items() if c > 1] == [], "tensors used by several parameters"
    unused = sorted(set(tensors) - set(used) - set(skipped))
    assert unused == [], f"checkpoint tensors no parameter reads: {unused}"
    assert not set(used) & set(skipped)


def test_key_table_covers_tied_qwen2_exactly(tiny_qwen2_dir):
    tensors = load_file(str(tiny_qwen2_dir / "model.safetensors"))
    _check_key_table(_abstract_qwen2(tiny_qwen2_dir), tensors, hf.QWEN2_RULES, "",
                     skipped={"lm_head.weight"})  # tied: the embedding is the output projection


def test_key_table_covers_untied_qwen2_exactly(tmp_path):
    d = rc.make_qwen2(tmp_path / "untied", num_hidden_layers=1, tie_word_embeddings=False, with_tokenizer=False)
    tensors = load_file(str(d / "model.safetensors"))
    assert "lm_head.weight" in tensors
    _check_key_table(_abstract_qwen2(d), tensors, hf.QWEN2_RULES, "", skipped=())
    model = from_pretrained(d)
    np.testing.assert_array_equal(np.asarray(model.lm_head.kernel[...]), tensors["lm_head.weight"].T)


def test_key_table_covers_whisper_encoder_exactly(tiny_whisper_dir):
    tensors = load_file(str(tiny_whisper_dir / "model.safetensors"))
    decoder = {k for k in tensors if not k.startswith("model.encoder.")}
    assert decoder and all(k.startswith("model.decoder.") for k in decoder)
    _check_key_table(_abstract_whisper(tiny_whisper_dir), tensors, hf.WHISPER_ENCODER_RULES, "model.encoder.",
                     skipped=decoder)


def test_key_table_covers_truncated_whisper_encoder_exactly(tiny_whisper_dir):
    tensors = load_file(str(tiny_whisper_dir / "model.safetensors"))
    n = 2
    beyond = {k for k in tensors if not k.startswith("model.encoder.") or k.startswith("model.encoder.layer_norm.")
              or any(k.startswith(f"model.encoder.layers.{i}.") for i in range(n, 100))}
    _check_key_table(_abstract_whisper(tiny_whisper_dir, n), tensors, hf.WHISPER_ENCODER_RULES, "model.encoder.",
                     skipped=beyond)


def test_hf_name_of_an_unknown_parameter_is_a_key_error():
    with pytest.raises(KeyError, match="layers.0.mystery"):
        hf.hf_name("layers.0.mystery.kernel", hf.QWEN2_RULES)


def test_loaded_values_follow_the_key_table_transforms(tiny_qwen2_dir, tiny_whisper_dir):
    """Spot-check the layouts: torch Linear [out, in] → kernel [in, out]; Conv1d [out, in, w] → [w, in, out]."""
    q = from_pretrained(tiny_qwen2_dir)
    qt = load_file(str(tiny_qwen2_dir / "model.safetensors"))
    np.testing.assert_array_equal(np.asarray(q.layers[1].self_attn.k_proj.kernel[...]),
                                  qt["model.layers.1.self_attn.k_proj.weight"].T)
    np.testing.assert_array_equal(np.asarray(q.layers[1].self_attn.k_proj.bias[...]),
                                  qt["model.layers.1.self_attn.k_proj.bias"])
    w = from_pretrained(tiny_whisper_dir)
    wt = load_file(str(tiny_whisper_dir / "model.safetensors"))
    np.testing.assert_array_equal(np.asarray(w.conv2.kernel[...]),
                                  wt["model.encoder.conv2.weight"].transpose(2, 1, 0))
