"""Orbax checkpoints of what trains: trainable params, optimizer state, step,
RNG, and the grain data-iterator state. The frozen backbone is not saved: the
run's config.yaml records the Hugging Face directories it came from.

Arrays are saved as a flat {path: array} dict, so restoring needs only a
template state (any mesh): orbax reshards onto the template's shardings.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import shutil
import sys
import threading
import time
from pathlib import Path

import grain
import jax
import numpy as np
import orbax.checkpoint as ocp

from aura_jax.config import ConfigError
from aura_jax.hf import CheckpointError


def flatten(tree) -> dict:
    return {jax.tree_util.keystr(path): leaf for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]}


def unflatten(template, flat: dict):
    paths_leaves, treedef = jax.tree_util.tree_flatten_with_path(template)
    missing = [jax.tree_util.keystr(p) for p, _ in paths_leaves if jax.tree_util.keystr(p) not in flat]
    if missing:
        raise ValueError(f"checkpoint lacks {missing[0]} (was it written with a different model config?)")
    return jax.tree_util.tree_unflatten(treedef, [flat[jax.tree_util.keystr(p)] for p, _ in paths_leaves])


class Checkpointer:
    def __init__(self, directory: str | Path, keep: int = 3, async_save: bool = True):
        self.directory = Path(directory).absolute()
        options = ocp.CheckpointManagerOptions(max_to_keep=keep, enable_async_checkpointing=async_save, create=True)
        try:
            self.manager = ocp.CheckpointManager(self.directory, options=options)
        except Exception as e:  # e.g. an unreadable checkpoint directory
            raise CheckpointError(f"{self.directory}: cannot open the checkpoints ({_brief(e)})") from None

    def latest_step(self) -> int | None:
        return self.manager.latest_step()

    def all_steps(self) -> list[int]:
        return sorted(self.manager.all_steps())

    def save(self, step: int, state, data_iterator=None, force: bool = False) -> bool:
        args = {"state": ocp.args.StandardSave(flatten(state))}
        if data_iterator is not None:
            args["data"] = grain.checkpoint.CheckpointSave(data_iterator)
        return self.manager.save(step, args=ocp.args.Composite(**args), force=force)

    def check_shapes(self, step: int, template) -> None:
        """The checkpoint at `step` holds exactly the template's arrays, shape for shape: a ConfigError
        naming the differences if not (a different model config, never a damaged file). An unreadable
        metadata file is a CheckpointError (damage)."""
        try:
            with _quiet_orbax():
                stored = ocp.StandardCheckpointer().metadata(self.directory / str(step) / "state").item_metadata
            stored = dict(stored)
        except Exception as e:
            raise CheckpointError(f"{self.directory / str(step)}: unreadable metadata ({_brief(e)})") from None
        problems = shape_mismatches({k: tuple(v.shape) for k, v in stored.items()},
                                    {k: tuple(v.shape) for k, v in flatten(template).items()})
        if problems:
            raise ConfigError(f"{self.directory / str(step)} was written by a different model config: "
                              + "; ".join(problems))

    def restore(self, step: int, template, data_iterator=None):
        """State shaped and sharded like `template` (arrays or ShapeDtypeStructs); the data
        iterator, if given, is moved to where it was at `step`. A checkpoint of other shapes is a
        ConfigError; one that cannot be read is a CheckpointError naming it."""
        self.check_shapes(step, template)
        abstract = jax.tree.map(_abstract, flatten(template))
        args = {"state": ocp.args.StandardRestore(abstract)}
        if data_iterator is not None:
            args["data"] = grain.checkpoint.CheckpointRestore(data_iterator)
        try:
            with _quiet_orbax():
                restored = self.manager.restore(step, args=ocp.args.Composite(**args))
        except Exception as e:
            _drop_late_closed_loop_errors()
            raise CheckpointError(f"{self.directory / str(step)}: does not restore ({_brief(e)})") from None
        return unflatten(template, restored["state"])

    def restore_newest(self, template, data_iterator=None, *, fallback: bool = True, log=print):
        """(state, step) from the newest checkpoint that restores, or (None, 0) when there is none.

        fallback=True: a checkpoint that does not restore (a damaged file) is moved out of the way,
        into `checkpoints_unrestorable/` beside the checkpoints directory, never deleted, and the next
        older one is tried; this is said in the log. fallback=False: the first failure is raised.
        Nothing is moved unless an older checkpoint restores (then the run continues from it)."""
        steps = self.all_steps()
        failed: list[tuple[int, str]] = []
        for step in reversed(steps):
            try:
                state = self.restore(step, template, data_iterator)
            except CheckpointError as e:
                if not fallback:
                    raise CheckpointError(f"{e}. Set checkpoint_fallback=true to resume from the newest "
                                          f"checkpoint that restores (have steps {steps})") from None
                failed.append((step, str(e)))
                log(f"checkpoint {e}; trying an older one")
                continue
            if failed:
                aside = self._move_aside([s for s, _ in failed])
                log(f"resumed from step {step}, the newest checkpoint that restores; moved the unrestorable "
                    f"step(s) {[s for s, _ in failed]} to {aside}")
            return state, step
        if failed:
            raise CheckpointError(f"no checkpoint in {self.directory} restores: "
                                  + "; ".join(msg for _, msg in failed))
        return None, 0

    def _move_aside(self, steps: list[int]) -> Path:
        aside = self.directory.parent / f"{self.directory.name}_unrestorable"
        if jax.process_index() == 0:
            aside.mkdir(exist_ok=True)
            for s in steps:
                target = aside / f"{s}-{time.strftime('%Y%m%d-%H%M%S')}"
                shutil.move(str(self.directory / str(s)), str(target))
        if jax.process_count() > 1:
            from jax.experimental import multihost_utils

            multihost_utils.sync_global_devices("aura_jax.training.checkpoint.move_aside")
        self.manager.reload()
        return aside

    def wait(self) -> None:
        self.manager.wait_until_finished()

    def close(self) -> None:
        self.manager.wait_until_finished()
        self.manager.close()


@contextlib.contextmanager
def _quiet_orbax():
    """A damaged checkpoint makes orbax's async readers log page-long tracebacks (asyncio, absl) on
    top of the exception we turn into one line; silence those loggers while restoring."""
    loggers = [logging.getLogger(name) for name in ("asyncio", "absl")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.CRITICAL)
    hook, sys.unraisablehook = sys.unraisablehook, lambda unraisable: None
    thread_hook, threading.excepthook = threading.excepthook, lambda args: None
    try:
        yield
    finally:
        gc.collect()  # the failed readers' coroutines die here, not later on the console
        sys.unraisablehook, threading.excepthook = hook, thread_hook
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


def _is_closed_loop_error(value) -> bool:
    return isinstance(value, RuntimeError) and str(value) == "Event loop is closed"


def _drop_late_closed_loop_errors() -> None:
    """After a failed restore, a straggling orbax reader can still call into the asyncio loop that
    the restore closed, after `_quiet_orbax` has ended: RuntimeError('Event loop is closed'), a bare
    traceback on the console of a run that resumed fine. From then on drop exactly that error from
    the interpreter's and threads' hooks; anything else still prints."""
    if getattr(sys.excepthook, "_aura_drops_closed_loop", False):
        return
    process_hook, thread_hook, unraisable_hook = sys.excepthook, threading.excepthook, sys.unraisablehook

    def process(kind, value, tb):
        if not _is_closed_loop_error(value):
            process_hook(kind, value, tb)

    def thread(args):
        if not _is_closed_loop_error(args.exc_value):
            thread_hook(args)

    def unraisable(args):
        if not _is_closed_loop_error(args.exc_value):
            unraisable_hook(args)

    process._aura_drops_closed_loop = True
    sys.excepthook, threading.excepthook, sys.unraisablehook = process, thread, unraisable


def _abstract(x):
    return jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=getattr(x, "sharding", None))


def _brief(e: Exception) -> str:
    """One line of an exception (orbax / tensorstore messages run to pages)."""
    text = str(e).strip().splitlines()
    first = (text[0] if text else "").split(" See full TensorStore details")[0]
    return f"{type(e).__name__}: {first[:300]}" if first else type(e).__name__


def shape_mismatches(stored: dict, expected: dict, extra_ok: bool = False, show: int = 3) -> list[str]:
    """Differences between {key: shape} of a checkpoint and of the model the config builds, the first
    `show` of each kind spelled out (extra_ok: the checkpoint may hold more, e.g. the distillation
    heads a student does without)."""
    def some(items: list[str]) -> list[str]:
        return items[:show] + ([f"and {len(items) - show} more"] if len(items) > show else [])

    problems = some([f"{_readable(k)} is {list(stored[k])} in the checkpoint, {list(expected[k])} by the config"
                     for k in sorted(set(stored) & set(expected)) if tuple(stored[k]) != tuple(expected[k])])
    problems += some([f"{_readable(k)} is in the config's model but not in the checkpoint"
                      for k in sorted(set(expected) - set(stored))])
    if not extra_ok:
        problems += some([f"{_readable(k)} is in the checkpoint but not in the config's model"
                          for k in sorted(set(stored) - set(expected))])
    return problems


def _readable(key: str) -> str:
    """".params['llm']['layers'][0]['mlp']['up_proj']['lora_a'].value" → "params llm.layers.0.mlp.up_proj.lora_a"."""
    import re

    head, _, rest = key.lstrip(".").partition("[")
    parts = re.findall(r"\['?([^'\]]+)'?\]", "[" + rest)
    return f"{head} " + ".".join(parts) if parts else key


def restore_student(run_dir: str | Path, step: int | None = None, overrides: list[str] = ()):
    """(config, student model, step) from a run directory, for export / parity / eval.

    Builds the model from `run_dir/config.yaml` without the teacher and the
    distillation heads (inference never needs them), then fills every trainable
    parameter from the checkpoint at `step` (default: the latest). The checkpoint's
    shapes must be the config's (a ConfigError listing the differences otherwise)."""
    from flax import nnx

    from aura_jax.build import load_aura
    from aura_jax.config import load_config
    from aura_jax.models.layers import Trainable

    run_dir = Path(run_dir)
    if not (run_dir / "config.yaml").exists():
        raise ConfigError(f"{run_dir}: not a training run directory (no config.yaml)")
    config = load_config(run_dir / "config.yaml", ["loss.distill_weight=0", "loss.ce_weight=1", *overrides])
    ckpt = Checkpointer(run_dir / "checkpoints", async_save=False)
    try:
        steps = ckpt.all_steps()
        if not steps:
            raise ConfigError(f"{run_dir / 'checkpoints'}: no checkpoint to restore")
        step = max(steps) if step is None else step
        if step not in steps:
            raise ConfigError(f"{run_dir / 'checkpoints'}: no checkpoint for step {step} (have {steps})")
        try:
            flat = ckpt.manager.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore()))["state"]
        except Exception as e:
            older = [s for s in steps if s < step]
            hint = f"; pass --step {older[-1]} for the next older one (have {steps})" if older else ""
            raise CheckpointError(f"{run_dir / 'checkpoints' / str(step)}: does not restore ({_brief(e)}){hint}") \
                from None
    finally:
        ckpt.close()
    model = load_aura(config)
    expected = {".params" + "".join(f"[{p!r}]" for p in path) + ".value": var
                for path, var in nnx.to_flat_state(nnx.state(model, Trainable))}
    # The training state also holds the optimizer's moments, step and rng; compare the parameters only.
    stored = {k: np.shape(v) for k, v in flat.items() if k.startswith(".params")}
    problems = shape_mismatches(stored, {k: tuple(v.shape) for k, v in expected.items()}, extra_ok=True)
    if problems:
        raise ConfigError(f"{run_dir}: checkpoint step {step} does not match {run_dir / 'config.yaml'}: "
                          + "; ".join(problems))
    for key, var in expected.items():
        var.set_value(jax.numpy.asarray(flat[key], dtype=var.dtype))
    return config, model, step
