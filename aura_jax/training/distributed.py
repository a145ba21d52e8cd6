"""Multi-process start-up: the same `aura-jax train` runs on every host of a TPU
pod or GPU cluster; only process 0 logs and writes files."""

from __future__ import annotations

import jax

from aura_jax.config import DistributedConfig


def initialize(cfg: DistributedConfig) -> None:
    """Call before anything touches devices."""
    if cfg.cpu_collectives:
        jax.config.update("jax_cpu_collectives_implementation", cfg.cpu_collectives)
    if cfg.coordinator_address or cfg.num_processes is not None:
        jax.distributed.initialize(coordinator_address=cfg.coordinator_address or None,
                                   num_processes=cfg.num_processes, process_id=cfg.process_id)
    elif cfg.enabled:
        jax.distributed.initialize()  # cluster auto-detection (TPU metadata, SLURM variables)


def enable_compilation_cache(directory: str) -> None:
    """Persist compiled programs across runs (restarts after preemption skip recompiling)."""
    if directory:
        import os

        jax.config.update("jax_compilation_cache_dir", os.path.expanduser(directory))
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 1.0)


def is_main_process() -> bool:
    return jax.process_index() == 0
