"""`aura-jax bench-train CONFIG [key=value ...]`: training-step throughput and MFU.

Builds the model, sharding and optimizer exactly as `aura-jax train` does (it
is `aura_jax.training.train.Trainer` and its compiled step: there is no second training
step here), compiles once (compile time reported), runs `--warmup` steps, then
times `--steps` steps, each closed by `jax.block_until_ready`. Reported: step
time (median / mean / min), examples/s, audio and text tokens/s, model FLOPs per
step (`aura_jax.tools.flops`, what the step computes), achieved TFLOP/s and MFU
against `--peak-tflops` or the known dense peak of the device (CPU: n/a unless
given), plus XLA's own FLOP count of the compiled program.

Data: `--data synthetic` (default) builds one batch of the configured shapes
(global batch `batch_size`, `data.text_bucket` text slots unless
`--text-tokens`, the largest audio bucket, every row speech) from a fixed seed
without reading any dataset; `--data config` takes batch 0 of the configured
data pipeline. The batch is placed once and reused: input time is excluded.

`--torch-reference` then runs the same step in PyTorch (transformers Qwen2 +
peft LoRA + transformers Whisper encoder truncated to the deepest paired layer,
same patch embedding, heads, loss and AdamW; `aura_jax.torch.reference_step`),
from the same HF directories, starting from the same trainable values, on the
same batch, timed the same way, and reports the ratio JAX time / PyTorch time
and both step-0 losses.

Speed features (docs/BENCHMARKS.md, "Speed features"): the `model.remat`, `model.attention`,
`model.scan_layers` and `model.truncate_teacher` overrides; `--compilation-cache DIR` (cold vs warm
compile); `--bucket-sweep L1,L2,..` (padding of the real planner on CommonVoice-like clip lengths
for these audio buckets vs the paper's [3000], the step time at each bucket, expected epoch time).

`--parts`: where the step's time goes, part by part, in JAX and the PyTorch reference, against a
plain matmul (`aura_jax/bench/parts.py`).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from aura_jax.bench.machine import (
    interleaved_steps,
    load_average,
    load_warning,
    physical_cores,
    step_stats,
    timed_steps,
)
from aura_jax.bench.step import bench_jax, prepare_jax


def add_arguments(p) -> None:
    p.add_argument("config", help="YAML config, e.g. configs/bench_cpu.yaml")
    p.add_argument("overrides", nargs="*", help="dotted key=value overrides (as for `aura-jax train`)")
    p.add_argument("--steps", type=int, default=10, help="timed steps (default 10)")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps after compilation (default 2)")
    p.add_argument("--peak-tflops", type=float, default=None,
                   help="dense peak TFLOP/s per device for MFU (default: known table; CPU: none → MFU n/a)")
    p.add_argument("--data", choices=["synthetic", "config"], default="synthetic",
                   help="synthetic batch of the configured shapes (default) or batch 0 of the configured data")
    p.add_argument("--text-tokens", type=int, default=None, help="synthetic: text slots per row (default data.text_bucket)")
    p.add_argument("--torch-reference", action="store_true", help="also time the PyTorch reference step")
    p.add_argument("--torch-device", default="cpu", help="device of the PyTorch reference (default cpu)")
    p.add_argument("--torch-threads", type=int, default=None, help="torch.set_num_threads (default: physical cores)")
    p.add_argument("--torch-attn", default="sdpa", choices=["sdpa", "eager"], help="transformers attention kernel")
    p.add_argument("--json", default=None, help="write the report as JSON here")
    p.add_argument("--compilation-cache", default=None, metavar="DIR",
                   help="use a persistent XLA compilation cache in DIR (default: none, the compile is real)")
    p.add_argument("--bucket-sweep", default=None, metavar="L1,L2,...",
                   help="padding report on a CommonVoice-like clip-length distribution for these audio buckets "
                        "vs the paper's [3000], then bench each bucket (data.audio_buckets=[L]) and combine into "
                        "an expected epoch time")
    p.add_argument("--clips", type=int, default=10000, help="--bucket-sweep: clips drawn (default 10000)")
    p.add_argument("--parts", action="store_true",
                   help="where the step's time goes: student forward / backward, teacher, alignment + distill, "
                        "optimizer, in JAX and in the PyTorch reference, against a plain matmul "
                        "(aura_jax/bench/parts.py); --steps rounds after --warmup")


# CommonVoice-like clip lengths (an assumption, not measured data): English CommonVoice clips are
# short read sentences, ~1.5-10 s, mean ~5 s. Log-normal, median 4.8 s, sigma 0.35 (mean 5.1 s),
# clipped to [1, 10] s; 100 mel frames per second as in Whisper's features.
COMMONVOICE_LIKE = {"median_s": 4.8, "sigma": 0.35, "min_s": 1.0, "max_s": 10.0}


def commonvoice_like_frames(n: int = 10000, seed: int = 0, **kw) -> np.ndarray:
    """Valid mel frames of n clips drawn from `COMMONVOICE_LIKE` (override with keyword arguments)."""
    d = dict(COMMONVOICE_LIKE, **kw)
    rng = np.random.default_rng(seed)
    seconds = np.clip(rng.lognormal(np.log(d["median_s"]), d["sigma"], n), d["min_s"], d["max_s"])
    return np.round(seconds * 100).astype(np.int64)


def padding_report(frames: np.ndarray, buckets: list[int], *, batch_size: int, patch_frames: int,
                   seed: int = 0) -> dict:
    """One epoch of the real planner (`aura_jax.data.plan.Plan`, speech rows only) at these buckets:
    audio tokens the student computes (batch rows × bucket / P, per batch) vs audio tokens present
    (ceil(valid frames / P) of the rows in the batches), batches per bucket, rows dropped."""
    from aura_jax.audio import N_FRAMES
    from aura_jax.data.plan import Plan

    frames = np.asarray(frames)
    plan = Plan(np.ones(len(frames), bool), frames, batch_size=batch_size, buckets=list(buckets), seed=seed,
                epochs=1.0)
    batches = plan.epoch(0)
    per_bucket = {int(L): 0 for L in plan.buckets}
    computed = present = rows = 0
    for L, idx in batches:
        per_bucket[int(L)] += 1
        computed += len(idx) * (L // patch_frames)
        present += int(np.ceil(np.minimum(frames[idx], N_FRAMES) / patch_frames).sum())
        rows += len(idx)
    return {"buckets": [int(L) for L in plan.buckets], "clips": int(len(frames)), "rows_in_batches": rows,
            "rows_dropped": int(len(frames) - rows), "batches_per_bucket": per_bucket,
            "audio_tokens_computed": int(computed), "audio_tokens_present": int(present),
            "padding_fraction": 1.0 - present / computed if computed else 0.0}


def bucket_sweep(config, buckets: list[int], *, clips: int = 10000, steps: int = 3, warmup: int = 1,
                 log=print) -> dict:
    """Padding report for `buckets` and for the paper's [3000]; the step time at each bucket size
    (bench-train with data.audio_buckets=[L]); expected epoch time = Σ batches(L) × step time(L)."""
    import dataclasses

    frames = commonvoice_like_frames(clips, seed=config.seed)
    p = config.audio.patch_frames
    reports = {"bucketed": padding_report(frames, buckets, batch_size=config.batch_size, patch_frames=p,
                                          seed=config.seed),
               "paper_30s": padding_report(frames, [3000], batch_size=config.batch_size, patch_frames=p,
                                           seed=config.seed)}
    step_s = {}
    for L in sorted(set(buckets) | {3000}):
        cfg = dataclasses.replace(config, data=dataclasses.replace(config.data, audio_buckets=[L]))
        run = bench_jax(cfg, steps=steps, warmup=warmup, log=log)
        step_s[L] = run["step_time"]["median_s"]
        log(f"bucket {L} frames: step median {step_s[L]:.4f} s (compile {run['compile_s']:.1f} s)")
    for r in reports.values():
        r["expected_epoch_s"] = sum(n * step_s[L] for L, n in r["batches_per_bucket"].items())
    return {"distribution": dict(COMMONVOICE_LIKE, clips=clips, mean_s=float(frames.mean() / 100)),
            "step_time_median_s": step_s, **reports,
            "epoch_speedup": reports["paper_30s"]["expected_epoch_s"] / reports["bucketed"]["expected_epoch_s"]}


def format_sweep(r: dict) -> str:
    lines = [f"clip lengths: {r['distribution']}"]
    for name in ("paper_30s", "bucketed"):
        x = r[name]
        lines.append(f"{name} buckets {x['buckets']}: batches {x['batches_per_bucket']}, audio tokens computed "
                     f"{x['audio_tokens_computed']:,} vs present {x['audio_tokens_present']:,} (padding "
                     f"{100 * x['padding_fraction']:.1f}%), rows dropped {x['rows_dropped']}, expected epoch "
                     f"{x['expected_epoch_s']:.1f} s")
    lines.append("step time by bucket: " + ", ".join(f"{L}: {t:.4f} s" for L, t in r["step_time_median_s"].items()))
    lines.append(f"expected epoch speed-up of the buckets over 30 s padding: {r['epoch_speedup']:.2f}x")
    return "\n".join(lines)


def report(config, jax_run: dict, *, peak_tflops: float | None = None) -> dict:
    """The figures: throughput, model FLOPs, achieved TFLOP/s, MFU."""
    from aura_jax.tools.flops import known_peak_tflops, shapes_from_config, step_flops

    shapes = shapes_from_config(config, jax_run["batch_shapes"])
    flops = step_flops(shapes)
    batch = jax_run["host_batch"]
    median = jax_run["step_time"]["median_s"]
    n_proc = 1
    try:
        import jax

        n_proc = jax.process_count()
    except Exception:
        pass
    rows = shapes.batch
    text = int(np.asarray(batch["attention_mask"]).sum()) * n_proc
    speech_rows = int((np.asarray(batch["audio_valid_frames"]) > 0).sum()) * n_proc
    audio = speech_rows * shapes.audio_tokens
    peak = peak_tflops
    peak_source = "--peak-tflops" if peak is not None else None
    if peak is None and jax_run["backend"] != "cpu":
        peak = known_peak_tflops(jax_run["device_kind"], config.model.compute_dtype)
        peak_source = f"table ({jax_run['device_kind']}, {config.model.compute_dtype})" if peak else None
    achieved = flops["total"] / median / 1e12
    n_dev = jax_run["num_devices"]
    return {
        "config": {"llm": config.model.llm, "teacher": config.model.teacher, "dtype": config.model.compute_dtype,
                   "param_dtype": config.model.param_dtype, "lora_layers": config.lora.num_layers,
                   "lora_rank": config.lora.rank},
        "device": {"backend": jax_run["backend"], "kind": jax_run["device_kind"], "count": n_dev,
                   "mesh": jax_run["mesh"]},
        "shapes": {"batch": rows, "text_slots": shapes.text_len, "audio_frames": shapes.audio_frames,
                   "audio_tokens_per_row": shapes.audio_tokens, "seq_len": shapes.seq_len,
                   "teacher_depth": shapes.teacher_depth, "teacher_segments": shapes.teacher_segments},
        "compile_s": jax_run["compile_s"], "memory_bytes": jax_run.get("memory"),
        "device_memory": jax_run.get("device_memory"),  # the allocator's measured peak (GPU/TPU)
        "speed_options": {k: getattr(config.model, k, None) for k in ("truncate_teacher", "remat", "attention",
                                                                      "scan_layers")},
        "step_time_median_s": median, "step_time_mean_s": jax_run["step_time"]["mean_s"],
        "step_time_min_s": jax_run["step_time"]["min_s"], "steps_timed": jax_run["step_time"]["n"],
        "examples_per_s": rows / median, "audio_tokens_per_s": audio / median, "text_tokens_per_s": text / median,
        "tokens_per_s": (audio + text) / median,
        "model_flops_per_step": flops["total"], "flops_breakdown": flops,
        "xla_flops_per_step": (jax_run["xla_flops_per_device"] * n_dev
                               if jax_run["xla_flops_per_device"] is not None else None),
        "achieved_tflops": achieved, "achieved_tflops_per_device": achieved / n_dev,
        "peak_tflops_per_device": peak, "peak_source": peak_source,
        "mfu": (achieved / (peak * n_dev)) if peak else None,
        "loss_step0": jax_run["step0"],
    }


def run_bench(config, *, steps: int = 10, warmup: int = 2, peak_tflops: float | None = None,
              data: str = "synthetic", text_tokens: int | None = None, torch_reference: bool = False,
              torch_device: str = "cpu", torch_threads: int | None = None, torch_attn: str = "sdpa",
              log=print) -> dict:
    """The JAX step's figures; with `torch_reference`, the PyTorch step timed interleaved with it
    (A B A B, same process, both warmed up) and the machine's load average before and after."""
    if steps < 1 or warmup < 0:
        raise ValueError(f"--steps={steps} must be >= 1 and --warmup={warmup} >= 0")
    load_before = load_average()
    jax_step, finish = prepare_jax(config, data=data, text_tokens=text_tokens,
                                   keep_initial_trainables=torch_reference, log=log)
    if not torch_reference:
        out = report(config, finish(*timed_steps(jax_step, warmup, steps)), peak_tflops=peak_tflops)
        out["load_average"] = {"before": load_before, "after": load_average(), "cores": os.cpu_count()}
        return out
    from aura_jax.torch.reference_step import prepare_reference

    # The reference is built from the JAX run's batch and starting trainables: one throwaway call gives them.
    probe = finish([0.0], jax_step())
    torch_step, torch_info = prepare_reference(config, probe["host_batch"], trainables=probe["initial_trainables"],
                                               device=torch_device, threads=torch_threads or physical_cores(),
                                               attn_implementation=torch_attn)
    load_start = load_average()
    jax_times, jax_first, torch_times, torch_first = interleaved_steps(jax_step, torch_step, warmup, steps)
    jax_run = finish(jax_times, jax_first)
    jax_run["step0"] = probe["step0"]  # the loss at the shared starting point (the probe was step 0)
    out = report(config, jax_run, peak_tflops=peak_tflops)
    ref = {**torch_info, **{f"step_time_{k}": v for k, v in step_stats(torch_times).items() if k != "n"},
           "steps_timed": len(torch_times), "loss_step0": {k: float(v) for k, v in torch_first.items()}}
    ref["examples_per_s"] = out["shapes"]["batch"] / ref["step_time_median_s"]
    ref["achieved_tflops"] = out["model_flops_per_step"] / ref["step_time_median_s"] / 1e12
    out["torch"] = ref
    out["interleaved"] = True
    out["ratio_jax_over_torch"] = out["step_time_median_s"] / ref["step_time_median_s"]
    out["ratio_min_jax_over_torch"] = out["step_time_min_s"] / ref["step_time_min_s"]
    out["load_average"] = {"before": load_before, "timed_start": load_start, "after": load_average(),
                           "cores": os.cpu_count()}
    out["load_warning"] = load_warning(load_before, os.cpu_count())
    # Step 0 of the comparison: JAX's probe step and PyTorch's first step start from the same trainables.
    l_jax, l_torch = out["loss_step0"]["loss"], ref["loss_step0"]["loss"]
    out["loss_step0_rel_diff"] = abs(l_jax - l_torch) / max(abs(l_torch), 1e-12)
    return out


def format_report(r: dict) -> str:
    g = lambda x: "n/a" if x is None else f"{x:.4g}"
    s = r["shapes"]
    mfu = "n/a" if r["mfu"] is None else f"{100 * r['mfu']:.2f}%"
    lines = [
        f"device: {r['device']['kind']} x{r['device']['count']} ({r['device']['backend']}), mesh {r['device']['mesh']}, "
        f"{r['config']['dtype']}",
        f"batch {s['batch']} rows x ({s['text_slots']} text slots + {s['audio_tokens_per_row']} audio tokens) "
        f"-> {s['seq_len']} positions; teacher runs {s['teacher_depth']} layers",
        f"compile: {r['compile_s']:.2f} s; options {r.get('speed_options')}",
        "XLA memory per device: " + ("n/a" if not r.get("memory_bytes") else ", ".join(
            f"{k} {v / 2**20:.1f} MiB" for k, v in r["memory_bytes"].items())),
        "measured peak device memory: " + ("n/a (the backend reports none)" if not r.get("device_memory") else
                                           f"{r['device_memory']['peak_gib']:.2f} GiB of "
                                           f"{r['device_memory']['limit_gib']:.2f} GiB"),
        f"step time: median {r['step_time_median_s']:.4f} s, mean {r['step_time_mean_s']:.4f} s, "
        f"min {r['step_time_min_s']:.4f} s over {r['steps_timed']} steps",
        f"throughput: {r['examples_per_s']:.3f} examples/s, {r['audio_tokens_per_s']:.1f} audio tokens/s, "
        f"{r['text_tokens_per_s']:.1f} text tokens/s",
        f"model FLOPs/step: {r['model_flops_per_step']:.4e} (XLA cost analysis: {g(r['xla_flops_per_step'])})",
        f"achieved: {r['achieved_tflops']:.4g} TFLOP/s ({r['achieved_tflops_per_device']:.4g} per device); "
        f"peak {g(r['peak_tflops_per_device'])} per device ({r['peak_source'] or 'unknown: pass --peak-tflops'}); "
        f"MFU {mfu}",
        f"step-0 loss (JAX): {r['loss_step0']['loss']:.6f} (ce {r['loss_step0']['ce']:.6f}, "
        f"distill {r['loss_step0']['distill']:.6f})",
    ]
    if r.get("load_average"):
        la = r["load_average"]
        lines.append(f"load average (1, 5, 15 min) before {la['before']}, after {la['after']} on {la['cores']} cores"
                     + (f"; timed part started at {la['timed_start']}" if la.get("timed_start") else ""))
    if "torch" in r:
        t = r["torch"]
        lines += [
            f"PyTorch reference ({t['device']}, {t['threads']} threads, attention {t['attn_implementation']}): "
            f"median {t['step_time_median_s']:.4f} s, mean {t['step_time_mean_s']:.4f} s over {t['steps_timed']} steps; "
            f"{t['examples_per_s']:.3f} examples/s; {t['achieved_tflops']:.4g} TFLOP/s",
            f"step-0 loss (PyTorch): {t['loss_step0']['loss']:.6f} (ce {t['loss_step0']['ce']:.6f}, "
            f"distill {t['loss_step0']['distill']:.6f}); relative difference {r['loss_step0_rel_diff']:.2e}",
            f"ratio JAX time / PyTorch time: {r['ratio_jax_over_torch']:.3f} (medians; minima "
            f"{r['ratio_min_jax_over_torch']:.3f}), steps interleaved A B A B in one process",
        ]
        if r.get("load_warning"):
            lines.append(f"WARNING: {r['load_warning']}")
    return "\n".join(lines)


def main(args) -> int:
    from aura_jax.config import load_config
    from aura_jax.training.distributed import initialize

    config = load_config(args.config, args.overrides)
    initialize(config.distributed)
    # No persistent compilation cache unless --compilation-cache: the compile time reported is a real compile.
    if args.compilation_cache:
        from aura_jax.training.distributed import enable_compilation_cache

        enable_compilation_cache(args.compilation_cache)
    if getattr(args, "parts", False):
        from aura_jax.bench.parts import bench_parts, format_parts

        parts = bench_parts(config, steps=args.steps, warmup=args.warmup, torch_threads=args.torch_threads)
        print(format_parts(parts))
        if args.json:
            Path(args.json).parent.mkdir(parents=True, exist_ok=True)
            Path(args.json).write_text(json.dumps(parts, indent=2, default=float))
        return 0
    if args.bucket_sweep:
        buckets = [int(x) for x in args.bucket_sweep.split(",") if x]
        sweep = bucket_sweep(config, buckets, clips=args.clips, steps=args.steps, warmup=args.warmup)
        print(format_sweep(sweep))
        if args.json:
            Path(args.json).parent.mkdir(parents=True, exist_ok=True)
            Path(args.json).write_text(json.dumps(sweep, indent=2, default=float))
        return 0
    result = run_bench(config, steps=args.steps, warmup=args.warmup, peak_tflops=args.peak_tflops, data=args.data,
                       text_tokens=args.text_tokens, torch_reference=args.torch_reference,
                       torch_device=args.torch_device,
                       torch_threads=args.torch_threads, torch_attn=args.torch_attn)
    from aura_jax.training.distributed import is_main_process

    if is_main_process():
        print(format_report(result))
        if args.json:
            Path(args.json).parent.mkdir(parents=True, exist_ok=True)
            Path(args.json).write_text(json.dumps(result, indent=2, default=float))
    return 0
