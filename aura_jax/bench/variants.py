"""`aura-jax bench-variants CONFIG [key=value ...] --variant NAME:key=value,key=value ...`: the training
step of several variants of one config, timed round-robin in one process.

Each variant is `Trainer`'s compiled step (as `bench-train` builds it) on batch 0 of the configured data
(or a synthetic batch); after every variant has compiled and warmed up, each round runs one step of every
variant in turn (A B C A B C ...), so a change of machine load falls on all sides alike. Reported: median
and spread per variant, its ratio to the first, the step-0 loss terms, and the load average before and
after. This is how docs/BENCHMARKS.md compares the teacher's window and the dot dtype (issue 33)."""

from __future__ import annotations

import json
import os
import statistics
import time

from aura_jax.bench.machine import load_average


def add_arguments(p) -> None:
    p.add_argument("config", help="YAML config, e.g. configs/demo_real.yaml")
    p.add_argument("overrides", nargs="*", help="key=value overrides shared by every variant")
    p.add_argument("--variant", action="append", required=True, metavar="NAME:k=v,k=v",
                   help="a variant: its name, then its own overrides (comma-separated; NAME: alone = none)")
    p.add_argument("--steps", type=int, default=6, help="timed rounds (default 6)")
    p.add_argument("--warmup", type=int, default=1, help="untimed steps per variant after compiling (default 1)")
    p.add_argument("--data", choices=["synthetic", "config"], default="config")
    p.add_argument("--json", default=None, help="write the figures as JSON here")


def parse_variant(text: str) -> tuple[str, list[str]]:
    name, sep, rest = text.partition(":")
    if not sep or not name:
        raise ValueError(f"--variant {text!r}: write NAME:key=value,key=value (or NAME: for none)")
    return name, [o for o in rest.split(",") if o]


def run(config_path: str, overrides: list[str], variants: list[tuple[str, list[str]]], *, steps: int, warmup: int,
        data: str, log=print) -> dict:
    import numpy as np

    from aura_jax.bench.step import prepare_jax
    from aura_jax.config import load_config

    if steps < 1 or warmup < 0:
        raise ValueError(f"--steps={steps} must be >= 1 and --warmup={warmup} >= 0")
    prepared = {}
    for name, own in variants:
        log(f"{name}: compiling ({' '.join(own) or 'no overrides'})")
        step, finish = prepare_jax(load_config(config_path, [*overrides, *own]), data=data, log=lambda *a: None)
        first = step()
        for _ in range(warmup):
            step()
        prepared[name] = (step, finish, first)
    load_before = load_average()
    times = {name: [] for name in prepared}
    for _ in range(steps):
        for name, (step, _, _) in prepared.items():
            start = time.perf_counter()
            step()
            times[name].append(time.perf_counter() - start)
    load_after = load_average()
    base = statistics.median(times[variants[0][0]])
    out = {"config": config_path, "overrides": overrides, "steps": steps, "warmup": warmup, "data": data,
           "load_average": {"before": load_before, "after": load_after, "cores": os.cpu_count()}, "variants": {}}
    for name, own in variants:
        step, finish, first = prepared[name]
        fig = finish(times[name], first)
        med = statistics.median(times[name])
        out["variants"][name] = {"overrides": own, "median_s": med, "min_s": min(times[name]),
                                 "max_s": max(times[name]), "speedup": base / med, "compile_s": fig["compile_s"],
                                 "step0": fig["step0"], "times_s": times[name],
                                 "xla_flops_per_device": fig["xla_flops_per_device"],
                                 "dot_flops_by_dtype": fig["dot_flops_by_dtype"]}
        del fig
    return out


def table(out: dict) -> str:
    lines = ["| variant | overrides | median s | min–max s | × the first | step-0 CE | step-0 distill |",
             "|---|---|---|---|---|---|---|"]
    for name, v in out["variants"].items():
        lines.append(f"| {name} | {' '.join(v['overrides']) or '–'} | {v['median_s']:.2f} | {v['min_s']:.2f}–"
                     f"{v['max_s']:.2f} | {v['speedup']:.2f} | {v['step0']['ce']:.4f} | {v['step0']['distill']:.4f} |")
    for name, v in out["variants"].items():  # what the step's matmuls run in (tools/flops.py)
        dots = sorted(v["dot_flops_by_dtype"].items(), key=lambda kv: -kv[1])
        lines.append(f"\n{name}: dot GFLOP by operand types " + ", ".join(f"{k} {f / 1e9:.3g}" for k, f in dots)
                     + (f" (XLA's total {v['xla_flops_per_device'] / 1e9:.1f})" if v["xla_flops_per_device"] else ""))
    la = out["load_average"]
    lines.append(f"\n{out['steps']} rounds, interleaved; load average before {la['before']}, after {la['after']}, "
                 f"{la['cores']} CPUs.")
    return "\n".join(lines)


def main(args) -> int:
    out = run(args.config, list(args.overrides), [parse_variant(v) for v in args.variant], steps=args.steps,
              warmup=args.warmup, data=args.data)
    print(table(out))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)
    return 0
