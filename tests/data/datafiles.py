"""Writers for data fixtures in the real on-disk layouts (CommonVoice release, parquet, JSONL)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from aura_jax.synth import synthesize

CV_HEADER = ["client_id", "path", "sentence_id", "sentence", "sentence_domain", "up_votes", "down_votes", "age",
             "gender", "accents", "variant", "locale", "segment"]
SENTENCES = ['He said "hello" to the driver.', "The train to Oslo leaves at nine.",
             "Maria bought 'three' apples.", "Call Bob before noon."]


def speech(text: str, voice: str = "en-us") -> np.ndarray:
    return synthesize(text, voice=voice)


def mp3_bytes(wave: np.ndarray) -> bytes:
    buf = io.BytesIO()
    # CommonVoice clips are 32/48 kHz mp3: resample so the loader has to resample back.
    sf.write(buf, soxr.resample(wave, 16000, 48000), 48000, format="MP3")
    return buf.getvalue()


def write_commonvoice(root: Path, rows: list[tuple[str, str | bytes, bytes | None]], tsv: str = "validated.tsv"):
    """rows: (clip file name, sentence (str, or raw bytes for a broken line), clip bytes or None = no file)."""
    (root / "clips").mkdir(parents=True, exist_ok=True)
    lines = [("\t".join(CV_HEADER)).encode()]
    for i, (clip, sentence, data) in enumerate(rows):
        sentence = sentence if isinstance(sentence, bytes) else sentence.encode()
        fields = [b"c%d" % i, clip.encode(), b"s%d" % i, sentence, b"", b"2", b"0", b"", b"", b"", b"", b"en", b""]
        lines.append(b"\t".join(fields))
        if data is not None:
            (root / "clips" / clip).write_bytes(data)
    (root / tsv).write_bytes(b"\n".join(lines) + b"\n")
    return root


def cfg(*overrides):
    """A validated Config from key=value overrides."""
    from aura_jax.config import load_config

    return load_config(None, list(overrides))
