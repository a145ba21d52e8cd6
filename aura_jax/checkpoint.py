"""Orbax checkpoints of what trains: trainable params, optimizer state, step,
RNG, and the grain data-iterator state. The frozen backbone is not saved: the
run's config.yaml records the Hugging Face directories it came from.

Arrays are saved as a flat {path: array} dict, so restoring needs only a
template state (any mesh): orbax reshards onto the template's shardings.
"""

from __future__ import annotations

from pathlib import Path

import grain
import jax
import orbax.checkpoint as ocp


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
        self.manager = ocp.CheckpointManager(self.directory, options=options)

    def latest_step(self) -> int | None:
        return self.manager.latest_step()

    def save(self, step: int, state, data_iterator=None, force: bool = False) -> bool:
        args = {"state": ocp.args.StandardSave(flatten(state))}
        if data_iterator is not None:
            args["data"] = grain.checkpoint.CheckpointSave(data_iterator)
        return self.manager.save(step, args=ocp.args.Composite(**args), force=force)

    def restore(self, step: int, template, data_iterator=None):
        """State shaped and sharded like `template` (arrays or ShapeDtypeStructs); the data
        iterator, if given, is moved to where it was at `step`."""
        abstract = jax.tree.map(_abstract, flatten(template))
        args = {"state": ocp.args.StandardRestore(abstract)}
        if data_iterator is not None:
            args["data"] = grain.checkpoint.CheckpointRestore(data_iterator)
        restored = self.manager.restore(step, args=ocp.args.Composite(**args))
        return unflatten(template, restored["state"])

    def wait(self) -> None:
        self.manager.wait_until_finished()

    def close(self) -> None:
        self.manager.wait_until_finished()
        self.manager.close()


def _abstract(x):
    return jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=getattr(x, "sharding", None))


def restore_student(run_dir: str | Path, step: int | None = None, overrides: list[str] = ()):
    """(config, student model, step) from a run directory, for export / parity / eval.

    Builds the model from `run_dir/config.yaml` without the teacher and the
    distillation heads (inference never needs them), then fills every trainable
    parameter from the checkpoint at `step` (default: the latest)."""
    from flax import nnx

    from aura_jax.build import load_aura
    from aura_jax.config import ConfigError, load_config
    from aura_jax.models.layers import Trainable

    run_dir = Path(run_dir)
    if not (run_dir / "config.yaml").exists():
        raise ConfigError(f"{run_dir}: not a training run directory (no config.yaml)")
    config = load_config(run_dir / "config.yaml", ["loss.distill_weight=0", "loss.ce_weight=1", *overrides])
    ckpt = Checkpointer(run_dir / "checkpoints", async_save=False)
    steps = ckpt.manager.all_steps()
    if not steps:
        raise ConfigError(f"{run_dir / 'checkpoints'}: no checkpoint to restore")
    step = max(steps) if step is None else step
    if step not in steps:
        raise ConfigError(f"{run_dir / 'checkpoints'}: no checkpoint for step {step} (have {sorted(steps)})")
    flat = ckpt.manager.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore()))["state"]
    ckpt.close()
    model = load_aura(config)
    for path, var in nnx.to_flat_state(nnx.state(model, Trainable)):
        key = ".params" + "".join(f"[{p!r}]" for p in path) + ".value"
        if key not in flat:
            raise ConfigError(f"{run_dir}: checkpoint step {step} lacks {key}")
        var.set_value(jax.numpy.asarray(flat[key], dtype=var.dtype))
    return config, model, step
