"""`aura-jax infer OUT --audio clip.wav --prompt "..." [--max-new-tokens N] [--device cpu|cuda] [--stream]`:
one greedy answer from an exported model (PyTorch, `aura_jax.torch.AuraSpeechLM`); `--stream`
plays the file in real time into `AuraSpeechLM.stream` (aura_jax/inference/streaming.py).

`check_exported` and `check_audio` are the cheap checks `infer` and `check-parity --exported`
run before loading anything: a directory that is not an export, or an audio file that is not
there, is a one-line ConfigError, not a traceback after the model has loaded."""

from __future__ import annotations

import json
from pathlib import Path

VARIANTS = ("merged", "peft")


def check_exported(path, variant: str | None = None) -> Path:
    """The directory holding the export to load (`path`, or its merged/ or peft/ half);
    ConfigError saying what `path` is instead (missing, a training run, an incomplete export)."""
    from aura_jax.config import ConfigError

    path = Path(path)
    if not path.is_dir():
        raise ConfigError(f"{path}: no such directory (give a directory written by "
                          f"`aura-jax export RUN_DIR --out DIR`)")
    halves = [k for k in VARIANTS if (path / k).is_dir()]
    if halves:  # a --format both export
        choice = variant or halves[0]
        if choice not in halves:
            raise ConfigError(f"{path}: this export has no {choice}/ directory (it has {', '.join(halves)}/)")
        target = path / choice
        if not (target / "aura_config.json").is_file():
            raise ConfigError(f"{target}: an incomplete export (no aura_config.json; was the export interrupted?); "
                              f"export the run again with `aura-jax export RUN_DIR --out {path} --overwrite`")
        return target
    if not (path / "aura_config.json").is_file():
        if (path / "config.yaml").is_file():
            raise ConfigError(f"{path}: not an aura-jax export (no aura_config.json) but a training run directory; "
                              f"export it with `aura-jax export {path} --out DIR`")
        raise ConfigError(f"{path}: not an aura-jax export (no aura_config.json); export a run with "
                          f"`aura-jax export RUN_DIR --out DIR`")
    if variant is not None:
        try:
            kind = json.loads((path / "aura_config.json").read_text()).get("kind")
        except (OSError, ValueError):
            kind = None
        if kind is not None and kind != variant:
            raise ConfigError(f"{path}: a {kind} export; --variant {variant} picks a half of a --format both export")
    return path


def check_audio(audio) -> None:
    """`--audio` must name a file (checked before any model is loaded)."""
    from aura_jax.config import ConfigError

    if audio is not None and not Path(audio).is_file():
        what = "is a directory, not an audio file" if Path(audio).is_dir() else "no such file"
        raise ConfigError(f"--audio {audio}: {what}")


def add_infer_arguments(p) -> None:
    p.add_argument("exported", help="directory written by `aura-jax export`")
    p.add_argument("--audio", required=True, help="audio file (any format libsndfile/librosa reads)")
    p.add_argument("--prompt", default="Transcribe the speech.")
    p.add_argument("--max-new-tokens", type=int, default=64)
    p.add_argument("--device", default="cpu", help="cpu | cuda | cuda:N")
    p.add_argument("--variant", default=None, choices=list(VARIANTS), help="for a --format both export")
    p.add_argument("--stream", action="store_true",
                   help="play the file in real time into a stream (audio prefilled while it is heard) and report "
                        "the delay from the end of speech to the first answer token")
    p.add_argument("--chunk-patches", type=int, default=5, help="--stream: audio patches per prefilled chunk")
    p.add_argument("--padded", action="store_true",
                   help="--stream: after the speech, also prefill the silence offline inference pads the clip "
                        "with (its exact input; the first token waits for it)")
    p.add_argument("--no-pace", action="store_true", help="--stream: feed the file as fast as possible")


def infer_main(args) -> int:
    variant = getattr(args, "variant", None)
    check_exported(args.exported, variant)
    check_audio(args.audio)
    if getattr(args, "stream", False) and args.chunk_patches < 1:
        from aura_jax.config import ConfigError

        raise ConfigError(f"--chunk-patches {args.chunk_patches}: must be at least 1")
    from aura_jax.torch import AuraSpeechLM

    lm = AuraSpeechLM.from_pretrained(args.exported, device=getattr(args, "device", "cpu"), variant=variant)
    prompt, max_new_tokens = getattr(args, "prompt", "Transcribe the speech."), getattr(args, "max_new_tokens", 64)
    if getattr(args, "stream", False):
        return _infer_stream(lm, args, prompt, max_new_tokens)
    print(lm.generate(args.audio, prompt, max_new_tokens=max_new_tokens))
    return 0


def _infer_stream(lm, args, prompt: str, max_new_tokens: int) -> int:
    """The file as a microphone delivers it (0.1 s pieces, real-time pace unless --no-pace)."""
    import sys
    import time

    from aura_jax.audio import load_audio
    from aura_jax.inference.streaming import realtime_chunks

    wave = load_audio(args.audio, lm.aura["audio"]["sampling_rate"])
    stream = lm.stream(prompt, chunk_patches=args.chunk_patches, padded=args.padded,
                       max_new_tokens=max_new_tokens)
    answer = stream.run(realtime_chunks(wave, seconds=0.1, pace=not args.no_pace))
    done = time.perf_counter()
    print(answer)
    window = lm.aura["audio"]["num_frames"] / 100
    cut = f"; only the first {window:g} s were heard (the model's window)" if stream.log_mel.truncated else ""
    print(f"streamed {len(wave) / 16000:.2f} s of audio{' in real time' if not args.no_pace else ''}: "
          f"{stream.chunks_prefilled} chunks of {args.chunk_patches} patches; first token "
          f"{stream.first_token_time - stream.end_of_speech:.3f} s after the end of speech, answer complete "
          f"{done - stream.end_of_speech:.3f} s after{cut}", file=sys.stderr)
    return 0
