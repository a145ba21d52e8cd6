"""`aura_jax.convert.ctranslate2`: a CTranslate2 Whisper that ctranslate2's own converter writes from
a small random Hugging Face Whisper comes back as the same Hugging Face Whisper, tensor for tensor;
what cannot be converted is one error naming the file."""

from __future__ import annotations

import shutil
import struct

import numpy as np
import pytest

from aura_jax.convert.ctranslate2 import Ct2FormatError, convert_whisper, read_model_bin


@pytest.fixture(scope="module")
def whisper(real_models):
    return real_models["whisper-tiny.en"]  # its vocabulary and tokenizer make the tiny random Whisper realistic


@pytest.fixture(scope="module")
def tiny_pair(whisper, tmp_path_factory):
    """(random HF Whisper with tiny.en's vocabulary and tokenizer, its CTranslate2 conversion)."""
    import ctranslate2.converters
    import torch
    from transformers import GenerationConfig, WhisperConfig, WhisperForConditionalGeneration

    root = tmp_path_factory.mktemp("ct2")
    config = WhisperConfig.from_pretrained(whisper)
    config.update(dict(d_model=32, encoder_layers=2, decoder_layers=2, encoder_attention_heads=4,
                       decoder_attention_heads=4, encoder_ffn_dim=64, decoder_ffn_dim=64))
    torch.manual_seed(0)
    model = WhisperForConditionalGeneration(config).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "embed_positions" not in name:
                p.add_(torch.randn_like(p) * 0.05)
    model.generation_config = GenerationConfig.from_pretrained(whisper)
    hf = root / "hf"
    model.save_pretrained(hf)
    for f in ("tokenizer.json", "tokenizer_config.json", "preprocessor_config.json"):
        shutil.copy(whisper / f, hf / f)
    ct2 = root / "ct2"
    ctranslate2.converters.TransformersConverter(str(hf)).convert(str(ct2), quantization="float32")
    shutil.copy(whisper / "tokenizer.json", ct2 / "tokenizer.json")  # as faster-whisper models ship it
    return hf, ct2


def test_the_conversion_gives_back_every_tensor_of_the_original(tiny_pair, tmp_path):
    from safetensors.numpy import load_file

    hf, ct2 = tiny_pair
    out = convert_whisper(ct2, tmp_path / "back")
    original, back = load_file(hf / "model.safetensors"), load_file(out / "model.safetensors")
    original.pop("proj_out.weight", None)
    back.pop("proj_out.weight", None)
    assert set(back) == set(original)
    for name, value in original.items():
        np.testing.assert_array_equal(back[name], value, err_msg=name)


def test_the_converted_directory_transcribes_like_the_original(tiny_pair, tmp_path):
    import torch
    from transformers import AutoTokenizer, WhisperFeatureExtractor, WhisperForConditionalGeneration

    hf, ct2 = tiny_pair
    out = convert_whisper(ct2, tmp_path / "back")
    assert WhisperFeatureExtractor.from_pretrained(out).feature_size == 80
    features = torch.randn(1, 80, 3000)
    runs = []
    for d in (hf, out):
        m = WhisperForConditionalGeneration.from_pretrained(d, dtype=torch.float32).eval()
        with torch.no_grad():
            runs.append(m.generate(features, max_new_tokens=6, do_sample=False).tolist())
    assert runs[0] == runs[1]
    assert not hasattr(WhisperForConditionalGeneration.from_pretrained(out).generation_config, "lang_to_id")
    assert AutoTokenizer.from_pretrained(out).decode([50257, 50362], skip_special_tokens=True) == ""


def test_a_truncated_model_bin_names_the_file(tiny_pair, tmp_path):
    _, ct2 = tiny_pair
    bad = tmp_path / "bad"
    shutil.copytree(ct2, bad)
    data = (bad / "model.bin").read_bytes()
    (bad / "model.bin").write_bytes(data[: len(data) // 2])
    with pytest.raises(Ct2FormatError, match=r"bad/model.bin: truncated"):
        read_model_bin(bad / "model.bin")


def test_another_spec_or_format_version_is_refused(tiny_pair, tmp_path):
    _, ct2 = tiny_pair
    data = (ct2 / "model.bin").read_bytes()
    path = tmp_path / "model.bin"
    path.write_bytes(struct.pack("<I", 99) + data[4:])
    with pytest.raises(Ct2FormatError, match="format version 99 is not supported"):
        read_model_bin(path)
    name = b"WhisperSpec\0"
    assert data[4:6] == struct.pack("<H", len(name)) and data[6:6 + len(name)] == name
    other = tmp_path / "other"
    shutil.copytree(ct2, other)
    (other / "model.bin").write_bytes(data[:6] + b"WhisperSpeX\0" + data[6 + len(name):])
    with pytest.raises(Ct2FormatError, match="a WhisperSpeX model; only Whisper"):
        convert_whisper(other, tmp_path / "out")


def test_a_missing_tokenizer_says_how_to_get_one(tiny_pair, tmp_path):
    _, ct2 = tiny_pair
    bare = tmp_path / "bare"
    shutil.copytree(ct2, bare)
    (bare / "tokenizer.json").unlink()
    with pytest.raises(Ct2FormatError, match=r"tokenizer.json: missing.*--copy_files tokenizer.json"):
        convert_whisper(bare, tmp_path / "out")
    assert not (tmp_path / "out").exists()
