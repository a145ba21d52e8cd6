"""Checks a training run makes before any expensive step (the audio scan, model
loading, compilation): every path it reads exists, every place it writes is
writable, and a resumed run's config agrees with the one it was started with.

Paths are stored resolved in the run's config.yaml, so a run can be exported
or evaluated from any directory.
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
from pathlib import Path

from aura_jax.config import Config, ConfigError

# What a resume may change, and how. Keys are dotted config keys; a section name covers its keys.
# Free: execution, logging and cadence; none of it changes the math or the data order
# (orbax reshards a checkpoint onto any mesh; accumulation gives the same update).
RESUME_FREE = ("steps", "epochs", "log_every", "checkpoint_every", "keep_checkpoints", "compilation_cache_dir",
               "run_dir", "resume_allow", "checkpoint_fallback", "mesh", "sharding_rules", "distributed",
               "grad_accum_steps", "model.remat", "model.attention", "model.scan_layers", "model.store_dot_weights",
               "model.truncate_teacher", "data.worker_threads", "data.prefetch_batches", "data.cache_dir",
               "data.strict", "curve")
# Allowed only when named in `resume_allow`: the optimisation continues on the same state and data
# order, but not as the run began (e.g. a lower learning rate for the rest of the run).
RESUME_ALLOWABLE = ("optim", "loss", "model.param_dtype", "model.compute_dtype")
# Everything else shapes the trained state (model, LoRA, heads, audio front end, prompt) or the
# data order (sources, batch, seed, buckets): a resume with a change there is refused.


def resolve_paths(config: Config) -> Config:
    """The config with every local path absolute (and `~` expanded)."""
    def absolute(p: str) -> str:
        return os.path.abspath(os.path.expanduser(p)) if p else p

    def source(s):
        return dataclasses.replace(s, path=absolute(s.path)) if s.type != "synthetic" else s

    return dataclasses.replace(
        config, run_dir=absolute(config.run_dir),
        compilation_cache_dir=absolute(config.compilation_cache_dir),
        model=dataclasses.replace(config.model, llm=absolute(config.model.llm),
                                  teacher=absolute(config.model.teacher)),
        data=dataclasses.replace(config.data, cache_dir=absolute(config.data.cache_dir),
                                 speech=[source(s) for s in config.data.speech],
                                 text=[source(s) for s in config.data.text]),
        curve=dataclasses.replace(config.curve, sets={k: absolute(v) for k, v in config.curve.sets.items()}))


# ---------------------------------------------------------------------------
# Start-up
# ---------------------------------------------------------------------------
def check_inputs(config: Config) -> None:
    """Every model directory and data source the run reads exists (a one-line ConfigError if not)."""
    m = config.model
    if not m.llm:
        raise ConfigError("model.llm is not set: the Hugging Face Qwen2 directory of the frozen LLM")
    needs_teacher = config.loss.distill_weight > 0
    if needs_teacher and not m.teacher:
        raise ConfigError("model.teacher is not set: the Hugging Face Whisper directory of the teacher "
                          "(or loss.distill_weight=0 for a CE-only run)")
    if m.random_init != "tiny":  # random_init=tiny builds missing checkpoints there
        for key, path in (("model.llm", m.llm), ("model.teacher", m.teacher if needs_teacher else "")):
            if path and not (Path(path) / "config.json").is_file():
                what = "does not exist" if not Path(path).exists() else "has no config.json"
                raise ConfigError(f"{key}={path}: {what} (a Hugging Face model directory)")
    for name, path in config.curve.sets.items():  # learning-curve sets: fail now, not after the scan
        if not Path(path).exists():
            raise ConfigError(f"curve.sets.{name}={path}: no such file or directory (an ASR set, as "
                              f"`aura-jax eval --task asr --data` reads it)")
    if config.optim.schedule not in ("constant", "cosine"):
        raise ConfigError(f"optim.schedule={config.optim.schedule!r}: use constant or cosine")
    if not config.data.speech and not config.data.text:
        raise ConfigError("data.speech and data.text are both empty: nothing to train on")
    for kind in ("speech", "text"):
        for i, s in enumerate(getattr(config.data, kind)):
            key = f"data.{kind}.{i}"
            if s.type not in ("commonvoice", "parquet", "qa_jsonl", "synthetic"):
                raise ConfigError(f"{key}.type={s.type!r}: use commonvoice, parquet, qa_jsonl or synthetic")
            if s.type == "synthetic":
                continue
            if not s.path:
                raise ConfigError(f"{key}.path is not set ({s.type} source)")
            if not Path(s.path).exists():
                raise ConfigError(f"{key}.path={s.path}: no such file or directory")
            if s.type == "commonvoice" and not (Path(s.path) / s.tsv).is_file():
                raise ConfigError(f"{key}: {Path(s.path) / s.tsv} not found (data.{kind}.{i}.tsv={s.tsv!r})")
            if s.type == "qa_jsonl" and not Path(s.path).is_file():
                raise ConfigError(f"{key}.path={s.path}: a qa_jsonl source is a file, this is a directory")


def check_writable(directory: str | Path, key: str) -> Path:
    """Create `directory` if needed and prove it is writable; a ConfigError naming `key` if not."""
    path = Path(directory)
    label = f"{key} {path}" if key.startswith("--") else f"{key}={path}"  # a flag, or a config key
    try:
        if path.exists() and not path.is_dir():
            raise ConfigError(f"{label}: is a file, not a directory")
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".write-test-"):
            pass
    except OSError as e:
        raise ConfigError(f"{label}: not writable ({e.strerror or e})") from None
    return path


def check_outputs(config: Config) -> None:
    """run_dir and the data cache are writable directories (created here)."""
    if not config.run_dir:
        raise ConfigError("run_dir is not set (checkpoints, metrics and the resolved config go there)")
    check_writable(config.run_dir, "run_dir")
    if config.data.cache_dir:
        check_writable(config.data.cache_dir, "data.cache_dir")
    else:
        check_writable(Path(config.run_dir) / "data_cache", "data.cache_dir (default run_dir/data_cache)")


# ---------------------------------------------------------------------------
# Resume
# ---------------------------------------------------------------------------
def flat_keys(tree: dict, prefix: str = "") -> dict:
    """{'a.b.c': leaf} of a nested dict (lists are leaves)."""
    out = {}
    for k, v in tree.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and k != "sharding_rules":
            out.update(flat_keys(v, key + "."))
        else:
            out[key] = v
    return out


def _covered(key: str, names) -> bool:
    return any(key == n or key.startswith(n + ".") for n in names)


def config_changes(saved: dict, new: Config) -> dict[str, tuple]:
    """{dotted key: (saved value, new value)} where the run's saved config and `new` differ."""
    old, cur = flat_keys(saved), flat_keys(new.to_dict())
    return {k: (old.get(k, "(absent)"), cur.get(k, "(absent)")) for k in sorted(set(old) | set(cur))
            if old.get(k, "(absent)") != cur.get(k, "(absent)")}


def check_resume(saved: dict, new: Config, run_dir: str | Path) -> dict[str, tuple]:
    """Refuse a resume whose config changes what shaped the run's state or data order (one
    ConfigError listing each changed key and what to do); returns the accepted changes."""
    changes = config_changes(saved, new)
    allowed = set(new.resume_allow)
    free, allowable = RESUME_FREE, RESUME_ALLOWABLE
    if new.optim.schedule == "cosine":  # the run's length shapes its learning-rate curve
        free = tuple(k for k in RESUME_FREE if k not in ("steps", "epochs"))
        allowable = RESUME_ALLOWABLE + ("steps", "epochs")
    refused = {k: v for k, v in changes.items()
               if not _covered(k, free) and not (_covered(k, allowable) and _covered(k, allowed))}
    if not refused:
        return changes
    listing = "; ".join(f"{k}: {a!r} → {b!r}" for k, a, b in ((k, *v) for k, v in refused.items()))
    fixable = [k for k in refused if _covered(k, allowable)]
    hard = [k for k in refused if k not in fixable]
    advice = []
    if hard:
        advice.append(f"{', '.join(hard)} shape{'s' if len(hard) == 1 else ''} the trained state or the data "
                      f"order, so this run cannot continue with {'it' if len(hard) == 1 else 'them'}: "
                      f"start a new run_dir (or drop the change)")
    if fixable:
        advice.append(f"to change {', '.join(fixable)} for the rest of the run on purpose, add "
                      f"resume_allow=[{','.join(fixable)}]")
    raise ConfigError(f"{run_dir}: resuming with a config that differs from the run's config.yaml: {listing}. "
                      + "; ".join(advice) + ".")
