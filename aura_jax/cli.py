"""`aura-jax` command line: parses arguments and dispatches; the logic lives in the modules."""

from __future__ import annotations

import argparse
import sys


def _check_parity(args) -> int:
    from aura_jax.parity import check_parity

    report = check_parity(args.hf, seed=args.seed)
    for name, diff in report.per_layer:
        print(f"{name:>24s}  max_abs_diff={diff:.3e}")
    worst = report.max_abs_diff
    ok = worst <= args.tol
    print(f"max_abs_diff={worst:.3e} ({report.kind}, tolerance {args.tol:g}: {'OK' if ok else 'FAIL'})")
    return 0 if ok else 1


def _demo(args) -> int:
    from aura_jax.demo import run_demo

    run_demo(args.workdir, overrides=args.overrides)
    return 0


def _train(args) -> int:
    from aura_jax.config import load_config
    from aura_jax.distributed import enable_compilation_cache, initialize
    from aura_jax.train import train

    config = load_config(args.config, args.overrides)
    initialize(config.distributed)
    enable_compilation_cache(config.compilation_cache_dir)
    summary = train(config)
    if summary.get("preempted"):
        print(f"preempted at step {summary['final_step']}; run the same command to resume")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="aura-jax", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("check-parity", help="compare our JAX model with transformers on a HF directory")
    p.add_argument("--hf", required=True, help="Hugging Face Qwen2 or Whisper directory")
    p.add_argument("--tol", type=float, default=1e-4, help="max abs difference allowed (default 1e-4)")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_check_parity)

    p = sub.add_parser("train", help="train AuRA (resumes from run_dir's latest checkpoint)")
    p.add_argument("config", help="YAML config, e.g. configs/tiny.yaml")
    p.add_argument("overrides", nargs="*", help="dotted key=value overrides, e.g. steps=100 mesh.fsdp=-1")
    p.set_defaults(func=_train)

    p = sub.add_parser("demo", help="tiny random Qwen2 + Whisper, one AuRA forward + loss on synthesized speech")
    p.add_argument("--workdir", default="runs/demo", help="where the tiny checkpoints go (default runs/demo)")
    p.add_argument("overrides", nargs="*", help="config overrides key=value")
    p.set_defaults(func=_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    from aura_jax.audio import AudioError
    from aura_jax.config import ConfigError
    from aura_jax.data.sources import DataError
    from aura_jax.hf import CheckpointError
    from aura_jax.tokenizer import TokenizerError

    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ConfigError, CheckpointError, TokenizerError, DataError, AudioError) as e:
        print(f"aura-jax {args.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
