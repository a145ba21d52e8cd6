"""Device mesh and the logical-axis rule table.

Model parameters name logical axes ("embed", "heads", "mlp", "vocab",
"lora_rank", ...); `config.sharding_rules` maps each name to a mesh axis (data,
fsdp, tensor), a list of them, or null (replicated). Changing parallelism is a
config change. A dimension that the mapped mesh axes do not divide is
replicated instead (tiny models on big meshes), never an error deep in XLA.
"""

from __future__ import annotations

import math

import jax
import numpy as np
from flax import nnx
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec

from aura_jax.config import ConfigError, MeshConfig

MESH_AXES = ("data", "fsdp", "tensor")


def mesh_shape(cfg: MeshConfig, num_devices: int) -> tuple[int, int, int]:
    sizes = [cfg.data, cfg.fsdp, cfg.tensor]
    if sizes.count(-1) > 1:
        raise ConfigError("mesh: at most one of mesh.data, mesh.fsdp, mesh.tensor may be -1")
    if any(s == 0 or s < -1 for s in sizes):
        raise ConfigError(f"mesh: sizes must be positive or -1, got data={cfg.data} fsdp={cfg.fsdp} tensor={cfg.tensor}")
    fixed = math.prod(s for s in sizes if s != -1)
    if -1 in sizes:
        if num_devices % fixed:
            raise ConfigError(f"mesh: {num_devices} devices are not divisible by the fixed axes (product {fixed})")
        sizes[sizes.index(-1)] = num_devices // fixed
    if math.prod(sizes) != num_devices:
        raise ConfigError(f"mesh: data×fsdp×tensor = {'×'.join(map(str, sizes))} = {math.prod(sizes)} "
                          f"but there are {num_devices} devices")
    return tuple(sizes)


def make_mesh(cfg: MeshConfig, devices=None) -> Mesh:
    devices = list(jax.devices() if devices is None else devices)
    shape = mesh_shape(cfg, len(devices))
    # Auto axis types: with_sharding_constraint and NamedSharding work as in MaxText.
    return jax.make_mesh(shape, MESH_AXES, axis_types=(AxisType.Auto,) * 3, devices=devices)


def logical_spec(axes, shape, rules: dict, mesh: Mesh) -> PartitionSpec:
    """PartitionSpec for a tensor of `shape` whose dims are named `axes`."""
    if axes is None:
        return PartitionSpec()
    used: set[str] = set()
    spec = []
    for name, dim in zip(axes, shape):
        if name is None:
            spec.append(None)
            continue
        if name not in rules:
            raise ConfigError(f"sharding_rules: no entry for logical axis {name!r}")
        target = rules[name]
        targets = [] if target is None else [target] if isinstance(target, str) else list(target)
        unknown = [t for t in targets if t not in MESH_AXES]
        if unknown:
            raise ConfigError(f"sharding_rules.{name}: {unknown[0]!r} is not a mesh axis ({', '.join(MESH_AXES)})")
        # A mesh axis shards at most one dim; size-1 axes are pointless; the dim must divide evenly.
        targets = [t for t in targets if t not in used and mesh.shape[t] > 1]
        if targets and dim % math.prod(mesh.shape[t] for t in targets) == 0:
            used.update(targets)
            spec.append(targets[0] if len(targets) == 1 else tuple(targets))
        else:
            spec.append(None)
    return PartitionSpec(*spec)


def _is_var(x) -> bool:
    return isinstance(x, nnx.Variable)


def state_shardings(state, mesh: Mesh, rules: dict):
    """NamedSharding for every Variable of an nnx.State (same tree, sharding as each value)."""
    def one(var):
        spec = logical_spec(var.get_metadata().get("logical_axes"), var.shape, rules, mesh)
        return var.replace(NamedSharding(mesh, spec))
    return jax.tree.map(one, state, is_leaf=_is_var)


def batch_sharding(mesh: Mesh, rules: dict, ndim: int) -> NamedSharding:
    """Batch arrays shard dim 0 over the "batch" rule's mesh axes (data, fsdp)."""
    target = rules.get("batch", ["data", "fsdp"])
    targets = tuple(t for t in ([target] if isinstance(target, str) else target or []) if mesh.shape[t] > 1)
    lead = None if not targets else targets[0] if len(targets) == 1 else targets
    return NamedSharding(mesh, PartitionSpec(lead, *([None] * (ndim - 1))))


def data_parallel_size(mesh: Mesh, rules: dict) -> int:
    target = rules.get("batch", ["data", "fsdp"])
    targets = [target] if isinstance(target, str) else list(target or [])
    return math.prod(mesh.shape[t] for t in targets)


def global_batch(local: dict, mesh: Mesh, rules: dict) -> dict:
    """This process's rows of the batch → global jax.Arrays sharded over the batch axes."""
    return {k: jax.make_array_from_process_local_data(batch_sharding(mesh, rules, np.ndim(v)), np.asarray(v))
            for k, v in local.items()}


def activation_constraints(mesh: Mesh, rules: dict):
    """The `models.layers.constrain` hook for this mesh: logical axes → with_sharding_constraint.
    Only the named dims are pinned; dims named None stay replicated (as MaxText's activation rules)."""
    def fn(x, axes):
        return jax.lax.with_sharding_constraint(x, NamedSharding(mesh, logical_spec(axes, x.shape, rules, mesh)))
    return fn


def placer(mesh: Mesh, rules: dict):
    """`place` callback for `aura_jax.hf.from_pretrained`: each tensor goes straight to its shards."""
    def place(_path, axes, array):
        sharding = NamedSharding(mesh, logical_spec(axes, array.shape, rules, mesh))
        return jax.make_array_from_callback(array.shape, sharding, lambda index: array[index])
    return place
