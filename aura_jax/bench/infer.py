"""`aura-jax bench-infer`: end-to-end inference latency and peak GPU memory of an
exported AuRA model (audio file in, text out) and, optionally, of the cascade
(Whisper transcribes, then the base LLM answers) on the same clips — the paper's
latency / memory columns. Warm-up runs are excluded. Needs the `convert` extra.

With random weights (`aura-jax make-random`), generation lengths are arbitrary;
`--fixed-length` (default) makes every system decode exactly
`--max-new-tokens` tokens (the transcript: `--asr-tokens`) so timings compare
the same work.
"""

from __future__ import annotations

import json
import statistics
import time
from pathlib import Path

from aura_jax.bench.clips import DEFAULT_QUESTION, synth_clips
from aura_jax.torch.systems import AuraSystem, CascadeSystem, sync


def _stats(seconds: list[float]) -> dict:
    ordered = sorted(seconds)
    return {"mean_s": statistics.fmean(seconds), "median_s": statistics.median(seconds),
            "p90_s": ordered[min(len(ordered) - 1, int(round(0.9 * (len(ordered) - 1))))], "n": len(seconds)}


def _memory(device: str) -> dict:
    import torch

    if not device.startswith("cuda"):
        return {}
    return {"peak_allocated_gb": torch.cuda.max_memory_allocated() / 1e9,
            "peak_reserved_gb": torch.cuda.max_memory_reserved() / 1e9}


def _reset_memory(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def run_benchmark(exported: str, *, cascade: tuple[str, str] | None = None, clips: list[str] | None = None,
                  device: str = "cpu", dtype: str = "float32", n: int = 100, warmup: int = 3,
                  max_new_tokens: int = 64, asr_tokens: int = 32, fixed_length: bool = True,
                  question: str = DEFAULT_QUESTION, workdir: str | Path = "runs/bench_infer") -> dict:
    import torch

    torch_dtype = getattr(torch, dtype)
    clips = clips or synth_clips(Path(workdir) / "clips", min(n, 20))
    systems = [lambda: AuraSystem(exported, device, torch_dtype)]
    if cascade:
        systems.append(lambda: CascadeSystem(cascade[0], cascade[1], device, torch_dtype))
    results = {"device": device if not device.startswith("cuda") else torch.cuda.get_device_name(),
               "dtype": dtype, "n": n, "warmup": warmup, "max_new_tokens": max_new_tokens,
               "asr_tokens": asr_tokens, "fixed_length": fixed_length, "systems": {}}
    for make in systems:
        _reset_memory(device)
        system = make()
        for i in range(warmup):
            system(clips[i % len(clips)], question, max_new_tokens, fixed_length, asr_tokens)
        seconds, sample = [], ""
        for i in range(n):
            sync(device)
            start = time.perf_counter()
            sample = system(clips[i % len(clips)], question, max_new_tokens, fixed_length, asr_tokens)
            sync(device)
            seconds.append(time.perf_counter() - start)
        results["systems"][system.name] = {**_stats(seconds), **_memory(device), "example_output": sample}
        del system
    return results


def format_table(results: dict) -> str:
    rows = ["| system | mean s/sample | median | p90 | peak alloc GB | peak reserved GB |",
            "|---|---|---|---|---|---|"]
    for name, r in results["systems"].items():
        alloc = f"{r['peak_allocated_gb']:.2f}" if "peak_allocated_gb" in r else "—"
        reserved = f"{r['peak_reserved_gb']:.2f}" if "peak_reserved_gb" in r else "—"
        rows.append(f"| {name} | {r['mean_s']:.3f} | {r['median_s']:.3f} | {r['p90_s']:.3f} | {alloc} | {reserved} |")
    return "\n".join(rows)


def add_arguments(p) -> None:
    p.add_argument("exported", help="directory written by `aura-jax export`")
    p.add_argument("--cascade", nargs=2, metavar=("WHISPER_DIR", "QWEN_DIR"), help="also time the cascade")
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    p.add_argument("--n", type=int, default=100, help="timed samples per system")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--max-new-tokens", type=int, default=64)
    p.add_argument("--asr-tokens", type=int, default=32, help="transcript length for the cascade")
    p.add_argument("--free-length", action="store_true", help="stop at EOS instead of decoding a fixed length")
    p.add_argument("--clips", nargs="*", help="audio files (default: synthesized questions)")
    p.add_argument("--json", default=None, help="where to write the results (default runs/bench_infer/"
                                                 "results.json, with --stream stream.json)")
    s = p.add_argument_group("streaming (--stream): time to first token after the end of speech")
    s.add_argument("--stream", action="store_true", help="AuRA streaming vs AuRA offline vs the cascade on clips "
                                                         "of --clip-seconds (aura_jax/bench/stream.py)")
    s.add_argument("--clip-seconds", default="2,5,10,30", help="clip lengths (default 2,5,10,30)")
    s.add_argument("--chunk-patches", type=int, default=5, help="audio patches per prefilled chunk (default 5)")
    s.add_argument("--piece-seconds", type=float, default=0.1, help="audio arrives in pieces of this length")
    s.add_argument("--jax-run", default=None, metavar="RUN_DIR",
                   help="also time the JAX student of this training run (the run EXPORT was exported from)")
    g = p.add_argument_group("batched generation (--generation): JAX generate_aura vs transformers generate")
    g.add_argument("--generation", action="store_true",
                   help="needs --jax-run; samples/s at each of --batch-sizes (aura_jax/bench/generation.py)")
    g.add_argument("--batch-sizes", default=None, help="--generation: batch sizes (default 1,8,32); --against: "
                                                       "(default 1,8)")
    u = p.add_argument_group("the cost of not merging (--against): EXPORT is a --format adapter export")
    u.add_argument("--against", default=None, metavar="MERGED_EXPORT",
                   help="time EXPORT (LoRA unmerged, at the audio positions of the prefill) against this merged "
                        "export, interleaved: prefill, time to first token, decode time per token, peak memory, at "
                        "each of --batch-sizes; 'merged-in-memory': EXPORT's adapters folded into its weights "
                        "(aura_jax/bench/unmerged.py)")
    g.add_argument("--floor", action="store_true",
                   help="--generation: also time prefill + first token, and bound the speed-up by what this "
                        "CPU's best matmul, matrix-vector and memory-read rates allow (JAX or PyTorch, float32)")


def _generation_main(args) -> int:
    from aura_jax.bench.generation import format_generation_table, run_generation_benchmark
    from aura_jax.config import ConfigError

    if not args.jax_run:
        raise ConfigError("--generation compares JAX with transformers: give --jax-run RUN_DIR (the run EXPORT "
                          "was exported from)")
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    sizes = [int(x) for x in (args.batch_sizes or "1,8,32").split(",") if x]
    r = run_generation_benchmark(args.exported, args.jax_run, batch_sizes=sizes, max_new_tokens=args.max_new_tokens,
                                 n=args.n, floor=args.floor)
    print(format_generation_table(r))
    path = Path(args.json or "runs/bench_infer/generation.json")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(r, indent=2))
    print(f"wrote {path}")
    return 0


def _check_arguments(args) -> None:
    """Cheap checks before any model loads: one line naming the bad argument."""
    from aura_jax.config import ConfigError
    from aura_jax.torch.infer import check_exported

    check_exported(args.exported)
    if getattr(args, "jax_run", None) and not (Path(args.jax_run) / "config.yaml").is_file():
        raise ConfigError(f"--jax-run {args.jax_run}: not a training run directory (no config.yaml)")
    for flag, value, kind in (("--clip-seconds", getattr(args, "clip_seconds", ""), float),
                              ("--batch-sizes", getattr(args, "batch_sizes", ""), int)):
        try:
            values = [kind(x) for x in str(value or "").split(",") if x]
        except ValueError:
            raise ConfigError(f"{flag} {value}: a comma-separated list of numbers") from None
        if any(v <= 0 for v in values):
            raise ConfigError(f"{flag} {value}: every value must be positive")
    if getattr(args, "against", None) and (getattr(args, "generation", False) or getattr(args, "stream", False)):
        raise ConfigError("--against is a benchmark of its own: give it without --generation and --stream")
    if getattr(args, "against", None) not in (None, "merged-in-memory"):
        check_exported(args.against)
    if getattr(args, "floor", False) and not getattr(args, "generation", False):
        raise ConfigError("--floor bounds the --generation comparison: give it with --generation")
    if args.n < 1 or args.warmup < 0 or getattr(args, "chunk_patches", 1) < 1:
        raise ConfigError(f"--n {args.n} must be >= 1, --warmup {args.warmup} >= 0, --chunk-patches >= 1")


def main(args) -> int:
    _check_arguments(args)
    if getattr(args, "generation", False):
        return _generation_main(args)
    if getattr(args, "against", None):
        from aura_jax.bench import unmerged

        return unmerged.main(args)
    if getattr(args, "stream", False):
        from aura_jax.bench import stream as bench_stream

        args.json = args.json or "runs/bench_infer/stream.json"
        return bench_stream.main(args)
    args.json = args.json or "runs/bench_infer/results.json"
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()  # generate() warns once per call about max_length defaults
    results = run_benchmark(args.exported, cascade=tuple(args.cascade) if args.cascade else None, clips=args.clips,
                            device=args.device, dtype=args.dtype, n=args.n, warmup=args.warmup,
                            max_new_tokens=args.max_new_tokens, asr_tokens=args.asr_tokens,
                            fixed_length=not args.free_length, workdir=Path(args.json).parent)
    print(f"device: {results['device']}, dtype {results['dtype']}, {results['n']} samples "
          f"({results['warmup']} warm-up excluded), {results['max_new_tokens']} new tokens"
          + (" (fixed length)" if results["fixed_length"] else ""))
    print(format_table(results))
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(results, indent=2))
    print(f"wrote {args.json}")
    return 0
