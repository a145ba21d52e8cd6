"""`aura-jax export`: a training run → files the PyTorch world loads (docs/EXPORT.md).

merged: the base's Hugging Face directory with W + (α/r)·B·A folded into the
first K layers (float32 math, then cast), same shard files and index as the
base. peft: `adapter_config.json` + `adapter_model.safetensors` for
`peft.PeftModel`. adapter (a `lora.audio_only=true` run, whose adapters act at
the audio positions only): `audio_lora.safetensors` (PEFT's tensor names and
shapes) + `audio_lora_config.json` (PEFT's fields and `"positions": "audio"`),
deliberately not under PEFT's file names, so that a plain `PeftModel` load
fails instead of applying the adapters at every position; `AuraSpeechLM` runs
it. All carry the audio patch embedding and `aura_config.json`.
Everything is written into a temporary sibling directory and renamed into
place at the end, so an interrupted export never leaves a directory that looks
complete.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
from pathlib import Path

import ml_dtypes
import numpy as np
from flax import nnx

from aura_jax.config import ConfigError
from aura_jax.hf import QWEN2_RULES, CheckpointError, SafetensorsDir, hf_name, read_config
from aura_jax.models.qwen2 import MODEL_TYPES, Qwen2Config
from aura_jax.torch.safetensors_io import save_arrays, write_safetensors

FORMATS = ("merged", "peft", "both", "adapter")
ADAPTER_WEIGHTS, ADAPTER_CONFIG = "audio_lora.safetensors", "audio_lora_config.json"  # not PEFT's names: see above
DTYPES = {"bfloat16": np.dtype(ml_dtypes.bfloat16), "float32": np.dtype(np.float32), "float16": np.dtype(np.float16)}
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "chat_template.jinja",
                   "vocab.json", "merges.txt", "added_tokens.json")
BLOCK = {"q_proj": "self_attn", "k_proj": "self_attn", "v_proj": "self_attn", "o_proj": "self_attn",
         "gate_proj": "mlp", "up_proj": "mlp", "down_proj": "mlp"}


def export(run_dir, base, out, *, format: str | None = None, dtype: str = "bfloat16", step: int | None = None,
           overrides=(), overwrite: bool = False, log=None) -> Path:
    """Export the run's student at `step` (default: latest) onto `base`; returns the absolute OUT.

    `base` None: the run's recorded backbone (`model.llm` of RUN_DIR/config.yaml, after
    `overrides`, dotted key=value as for train). An existing complete export at OUT is
    replaced only with `overwrite`; anything else at OUT is never touched. `log` (a
    callable taking one line) hears about choices made on the caller's behalf.

    Cheap checks (format, dtype, OUT, the run's config, --base config and tokenizer) run
    before the run is restored, so a typo fails in a second, not after loading a 7B.
    `format` None: "adapter" for a lora.audio_only run, else "merged"."""
    if format is not None and format not in FORMATS:
        raise ConfigError(f"--format {format!r}: use one of {', '.join(FORMATS)}")
    if dtype not in DTYPES:
        raise ConfigError(f"--dtype {dtype!r}: use one of {', '.join(DTYPES)}")
    from aura_jax.training.checkpoint import restore_student

    run_dir, out = Path(run_dir), Path(out).absolute()
    _check_out(out, overwrite)
    overrides = ["model.random_init=", *overrides]  # export never builds random checkpoints
    recorded, format = _recorded_backbone(run_dir, overrides, format, log)
    if recorded is None or not recorded.is_dir():
        shown = f"model.llm={recorded}" if recorded is not None else "model.llm (not set)"
        if base is None:
            raise ConfigError(f"{run_dir / 'config.yaml'}: the run's backbone {shown} does not exist (from "
                              f"{Path.cwd()}); pass --base DIR (the Hugging Face directory the run trained on) or the override model.llm=DIR")
        # Nothing else holds the run's frozen weights: --base stands in for them.
        overrides.append(f"model.llm={Path(base).absolute()}")
        if log:
            log(f"the run's backbone {shown} does not exist here; restoring the run onto --base {base}")
    base = (recorded if base is None else Path(base)).absolute()
    base_config = _check_base_config(base)
    config, model, step = restore_student(run_dir, step, overrides)
    check_base(model, base, run_dir, config.model.llm, base_config)
    lora_layout(model, config, run_dir)  # before writing anything
    from aura_jax.build import placeholder_token_id

    audio_token_id = placeholder_token_id(base, config.prompt.audio_token, model.llm.config.vocab_size)
    tmp = out.parent / f"{out.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    source = {"run_dir": str(run_dir.absolute())}
    try:
        if format == "both":
            write_merged(model, config, base, tmp / "merged", dtype, step, audio_token_id, run_dir=run_dir,
                         source=source)
            write_peft(model, config, base, tmp / "peft", step, audio_token_id, run_dir=run_dir, source=source)
        elif format == "adapter":
            write_adapter(model, config, base, tmp, step, audio_token_id, run_dir=run_dir, source=source)
        elif format == "merged":
            write_merged(model, config, base, tmp, dtype, step, audio_token_id, run_dir=run_dir, source=source)
        else:
            write_peft(model, config, base, tmp, step, audio_token_id, run_dir=run_dir, source=source)
        _commit(tmp, out, overwrite)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def _recorded_backbone(run_dir: Path, overrides, format: str | None = None, log=None) -> tuple[Path | None, str]:
    """(`model.llm` of the run's config.yaml (after overrides), resolved from here, or None if unset; the
    format). A run whose adapters act at the audio positions only exports as "adapter" alone, and only such
    a run does (before anything is restored)."""
    from aura_jax.config import load_config

    if not (run_dir / "config.yaml").exists():
        raise ConfigError(f"{run_dir}: not a training run directory (no config.yaml)")
    config = load_config(run_dir / "config.yaml", overrides)
    if config.lora.audio_only:
        if format is None and log:
            log("lora.audio_only=true: exporting --format adapter (the adapters act at the audio positions only)")
        format = format or "adapter"
        if format != "adapter":
            raise ConfigError(f"{run_dir / 'config.yaml'}: lora.audio_only=true — the adapters act at the audio "
                              f"positions only, which --format {format} (a merged kernel, or PEFT's adapters at "
                              "every position) does not express; use --format adapter (docs/EXPORT.md), which "
                              "aura_jax.torch.AuraSpeechLM runs")
    elif format == "adapter":
        raise ConfigError(f"{run_dir / 'config.yaml'}: --format adapter is for lora.audio_only=true runs; this run's "
                          "adapters act at every position: use --format peft (or merged, both)")
    return (Path(config.model.llm) if config.model.llm else None), (format or "merged")


def is_complete_export(path: Path) -> bool:
    """`aura_config.json` is written last: its presence marks a finished export (both: in each half)."""
    path = Path(path)
    return (path / "aura_config.json").is_file() or all(
        (path / kind / "aura_config.json").is_file() for kind in ("merged", "peft"))


def describe_export(path: Path) -> str:
    """'an export of RUN step S' from a complete export's aura_config.json (for messages)."""
    path = Path(path)
    for p in (path / "aura_config.json", path / "merged" / "aura_config.json", path / "peft" / "aura_config.json"):
        if p.is_file():
            try:
                aura = json.loads(p.read_text())
            except (OSError, ValueError):
                break
            run = aura.get("run_dir") or "an unrecorded run"
            return f"an export of {run} step {aura.get('step', '?')}"
    return "an aura_jax export"


def _check_out(out: Path, overwrite: bool = False) -> None:
    """OUT may be absent, or a complete export that `overwrite` allows to replace; nothing else."""
    if not out.exists():
        return
    if not (out.is_dir() and is_complete_export(out)):
        raise ConfigError(f"--out {out} exists and is not a complete aura_jax export; remove it or pick another")
    if not overwrite:
        raise ConfigError(f"{out} exists ({describe_export(out)}); pass --overwrite to replace it")


def _check_base_config(base: Path) -> Qwen2Config:
    hf = read_config(base)  # CheckpointError naming the directory when it or config.json is missing
    if hf.get("model_type") not in MODEL_TYPES:
        raise CheckpointError(f"{base / 'config.json'}: --base must be a Qwen2 or Llama directory (model_type "
                              f"{hf.get('model_type')!r})")
    try:
        parsed = Qwen2Config.from_hf(hf)
    except KeyError as e:
        raise CheckpointError(f"{base / 'config.json'}: missing field {e}") from None
    except ValueError as e:
        raise CheckpointError(f"{base / 'config.json'}: {e}") from None
    if not (base / "tokenizer.json").exists():
        raise CheckpointError(f"{base / 'tokenizer.json'}: missing (the export carries the base's tokenizer)")
    return parsed


def frozen_parameters(llm):
    """(NNX path as in QWEN2_RULES, variable) for every frozen weight of the (LoRA-wrapped) LLM."""
    for path, var in nnx.iter_graph(llm):
        if not isinstance(var, nnx.Variable) or "lora_a" in path or "lora_b" in path:
            continue
        yield ".".join(str(p) for p in path if p != "base"), var


def check_base(model, base: Path, run_dir, llm_dir, base_config: Qwen2Config | None = None) -> None:
    """The run's frozen LLM must be the base being exported onto: the same architecture
    (every Qwen2Config field), every frozen parameter present in the base with its shape,
    and equal values for the first rows of every tensor of the first and last layers and
    of the embedding, final norm and lm_head (compared in the coarser of the two dtypes)."""
    base_config = base_config or _check_base_config(base)
    ours = model.llm.config
    where = f"--base {base} is not the LLM the run {run_dir} trained on ({llm_dir})"
    diffs = [f"{f.name} is {getattr(base_config, f.name)!r} there, {getattr(ours, f.name)!r} in the run's LLM"
             for f in dataclasses.fields(ours) if getattr(base_config, f.name) != getattr(ours, f.name)]
    if diffs:
        raise CheckpointError(f"{where}: config.json differs: " + "; ".join(diffs))
    tensors = SafetensorsDir(base)
    probed = {"0", str(ours.num_hidden_layers - 1)}
    for dotted, var in frozen_parameters(model.llm):
        name, transform = hf_name(dotted, QWEN2_RULES)
        if name not in tensors:
            raise CheckpointError(f"{where}: tensor {name!r} is missing from the base")
        expected = tuple(var.shape)[::-1] if transform == "linear" else tuple(var.shape)  # torch layout
        if tensors.shape(name) != expected:
            raise CheckpointError(f"{where}: tensor {name!r} has shape {tensors.shape(name)} in the base, "
                                  f"{expected} in the run's LLM")
        layer = dotted.split(".")[1] if dotted.startswith("layers.") else None
        if layer is not None and layer not in probed:
            continue
        theirs = np.asarray(tensors.get(name)[:_PROBE_ROWS])
        value = var[...]  # slice on the device first: never copy a whole embedding to the host
        mine = np.asarray(value[:, :_PROBE_ROWS]).T if transform == "linear" else np.asarray(value[:_PROBE_ROWS])
        coarse = theirs.dtype if theirs.dtype.itemsize <= mine.dtype.itemsize else mine.dtype
        a, b = theirs.astype(coarse).astype(np.float32), mine.astype(coarse).astype(np.float32)
        if not np.array_equal(a, b):
            raise CheckpointError(f"{where}: the frozen weights differ, e.g. {name!r} (max abs diff "
                                  f"{float(np.max(np.abs(a - b))):.3g} over its first {len(a)} rows in {coarse})")


_PROBE_ROWS = 64


def _commit(tmp: Path, out: Path, overwrite: bool = False) -> None:
    """Rename tmp → out; an earlier complete export at out is replaced (with `overwrite`), anything else is refused."""
    if out.exists():
        _check_out(out, overwrite)
        old = out.parent / f"{out.name}.old-{os.getpid()}"
        shutil.rmtree(old, ignore_errors=True)
        out.rename(old)
        try:
            tmp.rename(out)
        except BaseException:
            old.rename(out)  # put the earlier export back
            raise
        shutil.rmtree(old, ignore_errors=True)
    else:
        tmp.rename(out)


def lora_layout(model, config, run_dir=None) -> dict:
    """{rank, layers, targets} of the restored adapters, read from the arrays' shapes.

    The model is built from the config, but a restore fills each adapter with the
    checkpoint's arrays whatever their shape: a config.yaml edited after training
    (lora.rank 8 → 4) would otherwise be exported as `"r": 4` beside [8, in] lora_A
    arrays, scaled by α/4. Raises ConfigError listing every disagreement."""
    from aura_jax.models.lora import lora_modules

    where = Path(run_dir if run_dir is not None else config.run_dir)
    problems, ranks, layers, targets = [], {}, set(), set()
    for i, name, module in lora_modules(model.llm):
        a, b = tuple(module.lora_a.shape), tuple(module.lora_b.shape)  # [in, r], [r, out]
        if len(a) != 2 or len(b) != 2 or a[1] != b[0]:
            problems.append(f"layers.{i}.{name} has lora_A {list(a[::-1])} and lora_B {list(b[::-1])}, "
                            f"which do not share a rank")
            continue
        ranks.setdefault(a[1], f"lora_A of layers.{i}.{name} is {list(a[::-1])}")
        layers.add(i)
        targets.add(name)
    lo = config.lora
    if not layers and not problems:
        problems.append("the restored model has no LoRA adapters")
    if len(ranks) > 1:
        problems.append("the adapters have different ranks: " + "; ".join(ranks.values()))
    rank = next(iter(ranks)) if len(ranks) == 1 else None
    if rank is not None and rank != lo.rank:
        problems.append(f"lora.rank is {lo.rank} in the config, {rank} in the checkpoint ({ranks[rank]})")
    if layers and sorted(layers) != list(range(lo.num_layers)):
        problems.append(f"lora.num_layers is {lo.num_layers} in the config, the checkpoint adapts layers "
                        f"{sorted(layers)}")
    if targets and targets != set(lo.targets):
        problems.append(f"lora.targets is {sorted(lo.targets)} in the config, {sorted(targets)} in the checkpoint")
    if problems:
        hint = f" (e.g. the override lora.rank={rank})" if rank is not None and rank != lo.rank else ""
        raise ConfigError(f"{where}: the restored LoRA arrays do not match {where / 'config.yaml'}: "
                          + "; ".join(problems) + ". Was config.yaml edited after training? Export with the "
                          f"values the run was trained with{hint}")
    return {"rank": rank, "layers": sorted(layers), "targets": [t for t in lo.targets if t in targets]}


def lora_entries(model):
    """(layer, projection, A [in, r], B [r, out], scale) of every adapter, as float32 numpy."""
    from aura_jax.models.lora import lora_modules

    for i, name, module in lora_modules(model.llm):
        yield (i, name, np.asarray(module.lora_a[...], np.float32), np.asarray(module.lora_b[...], np.float32),
               module.scale)


def write_merged(model, config, base: Path, out: Path, dtype: str, step: int, audio_token_id: int, *,
                 run_dir=None, source: dict | None = None) -> None:
    layout = lora_layout(model, config, run_dir)  # the arrays' rank, K and targets are the config's
    out.mkdir(parents=True)
    target = DTYPES[dtype]
    tensors = SafetensorsDir(base)
    deltas = {f"model.layers.{i}.{BLOCK[name]}.{name}.weight": (a, b, s) for i, name, a, b, s in lora_entries(model)}
    missing = sorted(set(deltas) - set(tensors.entries))
    if missing:
        raise CheckpointError(f"{base}: no tensor {missing[0]!r} to merge the run's LoRA into")

    def produce(name):
        w = tensors.get(name)
        if name not in deltas:
            return w.astype(_out_dtype(tensors, name, target))
        a, b, s = deltas[name]  # torch layout: W' [out, in] = W + s · (A B)ᵀ
        merged = np.asarray(w, np.float32) + s * (a @ b).T.astype(np.float32)
        return merged.astype(target)

    files: dict[str, list[str]] = {}
    for name in tensors.entries:
        files.setdefault(tensors.file_of(name).name, []).append(name)
    total, weight_map = 0, {}
    for file_name, names in sorted(files.items()):
        entries = [(n, tensors.shape(n), _out_dtype(tensors, n, target), lambda n=n: produce(n)) for n in names]
        total += write_safetensors(out / file_name, entries, metadata={"format": "pt"})
        weight_map.update({n: file_name for n in names})
    if (base / "model.safetensors.index.json").exists():
        (out / "model.safetensors.index.json").write_text(json.dumps(
            {"metadata": {"total_size": total}, "weight_map": dict(sorted(weight_map.items()))}, indent=2))
    hf = read_config(base)
    hf["dtype"] = hf["torch_dtype"] = dtype
    (out / "config.json").write_text(json.dumps(hf, indent=2))
    _copy_side_files(base, out, ("generation_config.json",) + TOKENIZER_FILES)
    _write_audio_and_config(model, config, base, out, "merged", dtype, step, audio_token_id, layout, source)


def _out_dtype(tensors: SafetensorsDir, name: str, target: np.dtype) -> np.dtype:
    """--dtype for every floating tensor (all of Qwen2's); integer buffers, if a base has any, keep theirs."""
    dtype = tensors.get(name).dtype
    return target if np.issubdtype(dtype, np.floating) or dtype == ml_dtypes.bfloat16 else dtype


def write_peft(model, config, base: Path, out: Path, step: int, audio_token_id: int, *,
               run_dir=None, source: dict | None = None) -> None:
    layout = lora_layout(model, config, run_dir)  # r, layers and targets come from the arrays (checked)
    out.mkdir(parents=True)
    arrays = {}
    for i, name, a, b, _ in lora_entries(model):
        prefix = f"base_model.model.model.layers.{i}.{BLOCK[name]}.{name}"
        arrays[f"{prefix}.lora_A.weight"] = np.ascontiguousarray(a.T)  # [r, in]
        arrays[f"{prefix}.lora_B.weight"] = np.ascontiguousarray(b.T)  # [out, r]
    save_arrays(out / "adapter_model.safetensors", arrays, metadata={"format": "pt"})
    lo = config.lora
    adapter = {"peft_type": "LORA", "task_type": "CAUSAL_LM", "base_model_name_or_path": str(base),
               "r": layout["rank"], "lora_alpha": lo.scale_alpha, "target_modules": layout["targets"],
               "layers_to_transform": layout["layers"], "layers_pattern": "layers",
               "lora_dropout": 0.0, "bias": "none", "fan_in_fan_out": False, "inference_mode": True,
               "init_lora_weights": True, "use_rslora": False, "use_dora": False, "modules_to_save": None}
    (out / "adapter_config.json").write_text(json.dumps(adapter, indent=2))
    _copy_side_files(base, out, TOKENIZER_FILES)
    _write_audio_and_config(model, config, base, out, "peft", "float32", step, audio_token_id, layout, source)


def write_adapter(model, config, base: Path, out: Path, step: int, audio_token_id: int, *,
                  run_dir=None, source: dict | None = None) -> None:
    """A lora.audio_only run: PEFT's tensors and fields under names PEFT does not read (docs/EXPORT.md)."""
    from aura_jax.models.lora import audio_only

    if not audio_only(model.llm):
        raise ConfigError(f"{run_dir}: the restored adapters act at every position; --format adapter is for "
                          "lora.audio_only=true runs")
    layout = lora_layout(model, config, run_dir)
    out.mkdir(parents=True)
    arrays = {}
    for i, name, a, b, _ in lora_entries(model):
        prefix = f"base_model.model.model.layers.{i}.{BLOCK[name]}.{name}"
        arrays[f"{prefix}.lora_A.weight"] = np.ascontiguousarray(a.T)  # [r, in]
        arrays[f"{prefix}.lora_B.weight"] = np.ascontiguousarray(b.T)  # [out, r]
    save_arrays(out / ADAPTER_WEIGHTS, arrays, metadata={"format": "pt", "aura_jax.positions": "audio"})
    lo = config.lora
    adapter = {"positions": "audio",
               "note": "the update (lora_alpha/r)·B·A·x is added at the audio positions of the prefill only; every "
                       "text position and every decoded token uses the base weights. peft.PeftModel would apply "
                       "it everywhere: load with aura_jax.torch.AuraSpeechLM",
               "peft_type": "LORA", "task_type": "CAUSAL_LM", "base_model_name_or_path": str(base),
               "r": layout["rank"], "lora_alpha": lo.scale_alpha, "target_modules": layout["targets"],
               "layers_to_transform": layout["layers"], "layers_pattern": "layers",
               "lora_dropout": 0.0, "bias": "none", "fan_in_fan_out": False, "inference_mode": True,
               "use_rslora": False, "use_dora": False}
    (out / ADAPTER_CONFIG).write_text(json.dumps(adapter, indent=2))
    _copy_side_files(base, out, TOKENIZER_FILES)
    _write_audio_and_config(model, config, base, out, "adapter", "float32", step, audio_token_id, layout, source)


def _copy_side_files(base: Path, out: Path, names) -> None:
    for name in names:
        if (base / name).exists():
            shutil.copy2(base / name, out / name)


def _write_audio_and_config(model, config, base: Path, out: Path, kind: str, dtype: str, step: int,
                            audio_token_id: int, layout: dict, source: dict | None = None) -> None:
    e = model.audio_embed
    save_arrays(out / "audio_embed.safetensors", {
        "proj.weight": np.ascontiguousarray(np.asarray(e.proj.kernel[...], np.float32).T),
        "proj.bias": np.asarray(e.proj.bias[...], np.float32),
        "norm.weight": np.asarray(e.norm.scale[...], np.float32),
        "norm.bias": np.asarray(e.norm.bias[...], np.float32),
        "positions": np.asarray(e.positions[...], np.float32)}, metadata={"format": "pt"})
    a, p, lo = config.audio, config.prompt, config.lora
    aura = {"format": "aura_jax.export/1", "kind": kind, "step": int(step), "base_model": str(base), "dtype": dtype,
            "audio": {"sampling_rate": a.sampling_rate, "n_mels": a.n_mels, "num_frames": a.num_frames,
                      "patch_frames": a.patch_frames, "num_audio_tokens": a.num_audio_tokens,
                      "layer_norm_eps": e.norm.eps, "buckets": sorted(config.data.audio_buckets)},
            "audio_token": p.audio_token,
            "audio_token_id": int(audio_token_id),
            "prompt": {"system": p.system, "asr_instruction": p.asr_instruction},
            "lora": {"num_layers": len(layout["layers"]), "rank": layout["rank"], "alpha": lo.scale_alpha,
                     "targets": layout["targets"], "positions": "audio" if kind == "adapter" else "all"},
            "bidirectional_audio": config.distill.bidirectional_audio,
            "bidirectional_chunk": config.distill.bidirectional_chunk,
            **(source or {})}  # run_dir: which run this is an export of
    (out / "aura_config.json").write_text(json.dumps(aura, indent=2))  # written last: marks completeness


def add_export_arguments(p) -> None:
    p.usage = "%(prog)s RUN_DIR [key=value ...] --out OUT [options]"
    p.add_argument("run_dir", help="training run directory")
    p.add_argument("overrides", nargs="*", metavar="key=value",
                   help="config overrides for the run's config.yaml, right after RUN_DIR, e.g. model.llm=/abs/path "
                        "when the run's recorded (relative) paths do not resolve from here")
    p.add_argument("--base", default=None,
                   help="the Hugging Face Qwen2 directory the run trained on (default: the run's model.llm)")
    p.add_argument("--out", required=True)
    p.add_argument("--overwrite", action="store_true", help="replace an earlier export at --out")
    p.add_argument("--format", default=None, choices=FORMATS,
                   help="merged, peft, both (merged/ and peft/), or adapter (a lora.audio_only=true run: adapters "
                   "at the audio positions only, run by AuraSpeechLM); default: adapter for a lora.audio_only run, "
                   "else merged")
    p.add_argument("--dtype", default="bfloat16", choices=tuple(DTYPES))
    p.add_argument("--step", type=int, default=None, help="checkpoint step (default: latest)")


def export_main(args) -> int:
    out = Path(args.out).absolute()
    previous = describe_export(out) if out.is_dir() and is_complete_export(out) else None
    out = export(args.run_dir, args.base, out, format=args.format, dtype=args.dtype, step=args.step,
                 overrides=getattr(args, "overrides", ()), overwrite=getattr(args, "overwrite", False), log=print)
    if previous is not None:
        print(f"replaced {out} ({previous})")
    parts = [out / kind for kind in ("merged", "peft")] if args.format == "both" else [out]
    for part in parts:
        aura = json.loads((part / "aura_config.json").read_text())
        print(f"exported {aura['kind']} ({aura['dtype']}) of {args.run_dir} step {aura['step']} "
              f"onto {aura['base_model']} to {part}")
    return 0
