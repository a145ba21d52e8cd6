"""Data fixtures written in the real on-disk layouts (CommonVoice release, parquet, JSONL)."""

from __future__ import annotations

import pytest

from tests.data.datafiles import SENTENCES, mp3_bytes, speech, write_commonvoice


@pytest.fixture(scope="session")
def tokenizer(tiny_qwen2_dir):
    from aura_jax.tokenizer import ChatTokenizer

    return ChatTokenizer.from_pretrained(tiny_qwen2_dir)


@pytest.fixture(scope="session")
def clips():
    """Encoded mp3s of the SENTENCES, spoken by espeak-ng (or the synthetic fallback)."""
    voices = ["en-us", "en-gb", "en-us+f3", "en-gb-scotland"]
    return [mp3_bytes(speech(s, v)) for s, v in zip(SENTENCES, voices)]


@pytest.fixture(scope="session")
def cv_dir(tmp_path_factory, clips):
    """A clean CommonVoice release: 4 clips."""
    rows = [(f"common_voice_en_{i}.mp3", s, c) for i, (s, c) in enumerate(zip(SENTENCES, clips))]
    return write_commonvoice(tmp_path_factory.mktemp("cv"), rows)


@pytest.fixture(scope="session")
def cv_bad_dir(tmp_path_factory, clips):
    """Good clips plus a missing clip, an empty file, a corrupt mp3 and an empty sentence."""
    rows = [(f"good_{i}.mp3", s, c) for i, (s, c) in enumerate(zip(SENTENCES, clips))]
    rows += [("missing.mp3", "This clip was never written.", None),
             ("empty.mp3", "This clip is an empty file.", b""),
             ("corrupt.mp3", "This clip is not audio.", b"ID3\x03\x00garbage" + bytes(range(256)) * 8),
             ("no_text.mp3", "", clips[0])]
    return write_commonvoice(tmp_path_factory.mktemp("cv_bad"), rows)
