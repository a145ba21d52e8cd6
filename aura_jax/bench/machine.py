"""What every benchmark here shares: the machine's load and cores, and the timing loops.

Imports nothing of aura_jax, so any benchmark (or the PyTorch reference step) may use it
without pulling in another benchmark."""

from __future__ import annotations

import os
import statistics
import time
from pathlib import Path


def physical_cores() -> int:
    """Physical CPU cores (distinct (package, core) pairs in /proc/cpuinfo; os.cpu_count() otherwise)."""
    try:
        pairs, phys = set(), None
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("physical id"):
                phys = line.split(":")[1].strip()
            elif line.startswith("core id"):
                pairs.add((phys, line.split(":")[1].strip()))
        if pairs:
            return len(pairs)
    except OSError:
        pass
    return os.cpu_count() or 1


def load_average() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:  # not every platform has one
        return None


def load_warning(load: list[float] | None, cores: int | None) -> str | None:
    """A reason to distrust a timing, or None: the 1-minute load average before the run, from other jobs,
    above a quarter of the cores (two frameworks' thread pools degrade differently under contention)."""
    if not load or not cores:
        return None
    if load[0] > 0.25 * cores:
        return (f"load average {load[0]:.2f} on {cores} cores before the run: other jobs share the CPU, "
                f"so the times and especially the JAX/PyTorch ratio are unreliable; rerun on an idle machine")
    return None


def timed_steps(step, warmup: int, steps: int) -> tuple[list[float], dict]:
    """Run `warmup` untimed then `steps` timed calls of `step()`; (seconds per timed call, first call's metrics)."""
    times, first = [], None
    for i in range(warmup + steps):
        start = time.perf_counter()
        metrics = step()
        if i >= warmup:
            times.append(time.perf_counter() - start)
        if i == 0:
            first = metrics
    return times, first


def interleaved_steps(step_a, step_b, warmup: int, steps: int):
    """A B A B ...: both warm up, then each timed step of one sits between steps of the other, so a change
    of machine load during the run falls on both sides alike; (times_a, first_a, times_b, first_b)."""
    times_a, times_b, first_a, first_b = [], [], None, None
    for i in range(warmup + steps):
        for step, times, which in ((step_a, times_a, "a"), (step_b, times_b, "b")):
            start = time.perf_counter()
            metrics = step()
            if i >= warmup:
                times.append(time.perf_counter() - start)
            if i == 0 and which == "a":
                first_a = metrics
            elif i == 0:
                first_b = metrics
    return times_a, first_a, times_b, first_b


def step_stats(seconds: list[float]) -> dict:
    return {"median_s": statistics.median(seconds), "mean_s": statistics.fmean(seconds), "min_s": min(seconds),
            "max_s": max(seconds), "n": len(seconds)}
