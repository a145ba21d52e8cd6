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

import numpy as np

from aura_jax.audio import load_audio, log_mel_spectrogram

DEFAULT_QUESTION = "Give a simple one sentence answer."
QUESTIONS = ("what is the capital of france", "how many legs does a spider have", "who wrote the odyssey",
             "what is two plus three", "which planet is closest to the sun")


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        import torch

        torch.cuda.synchronize()


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


def _generate_kwargs(max_new_tokens: int, fixed: bool) -> dict:
    kwargs = {"max_new_tokens": max_new_tokens, "do_sample": False}
    if fixed:
        kwargs["min_new_tokens"] = max_new_tokens
    return kwargs


class AuraSystem:
    name = "AuRA"

    def __init__(self, exported: str, device: str, dtype):
        from aura_jax.torch import AuraSpeechLM

        self.lm = AuraSpeechLM.from_pretrained(exported, device=device, dtype=dtype)

    def __call__(self, clip: str, question: str, max_new_tokens: int, fixed: bool, asr_tokens: int) -> str:
        import torch

        embeds, mask, _ = self.lm.prepare(clip, question)
        with torch.no_grad():
            out = self.lm.model.generate(inputs_embeds=embeds, attention_mask=mask,
                                         **_generate_kwargs(max_new_tokens, fixed))
        return self.lm.tokenizer.decode(out[0], skip_special_tokens=True)


class CascadeSystem:
    name = "Cascade"

    def __init__(self, whisper_dir: str, qwen_dir: str, device: str, dtype):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer, WhisperForConditionalGeneration

        self.device, self.dtype = device, dtype
        self.asr = WhisperForConditionalGeneration.from_pretrained(whisper_dir, dtype=dtype).to(device).eval()
        self.asr_tok = AutoTokenizer.from_pretrained(whisper_dir)
        self.llm = AutoModelForCausalLM.from_pretrained(qwen_dir, dtype=dtype).to(device).eval()
        self.tok = AutoTokenizer.from_pretrained(qwen_dir)
        self.english = {"language": "en", "task": "transcribe"} if hasattr(self.asr.generation_config, "lang_to_id") else {}
        self._torch = torch

    def transcribe(self, clip, asr_tokens: int, fixed: bool) -> str:
        """Transcript of an audio path or a 16 kHz waveform."""
        torch = self._torch
        wave = load_audio(clip) if isinstance(clip, (str, Path)) else np.asarray(clip, np.float32)
        feats = log_mel_spectrogram(wave, 16000, self.asr.config.num_mel_bins)
        x = torch.as_tensor(feats[None], dtype=self.dtype, device=self.device)
        with torch.no_grad():
            ids = self.asr.generate(x, **self.english, **_generate_kwargs(asr_tokens, fixed))
        ids = ids[0].tolist()
        vocab = len(self.asr_tok)
        return self.asr_tok.decode([i % vocab for i in ids], skip_special_tokens=True)  # (random weights: any id)

    def __call__(self, clip, question: str, max_new_tokens: int, fixed: bool, asr_tokens: int) -> str:
        return self.answer(self.transcribe(clip, asr_tokens, fixed), question, max_new_tokens, fixed)

    def answer(self, transcript: str, question: str, max_new_tokens: int, fixed: bool = False) -> str:
        torch = self._torch
        messages = [{"role": "user", "content": f"{transcript}\n{question}"}]
        ids = self.tok.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt",
                                           return_dict=True)["input_ids"].to(self.device)
        with torch.no_grad():
            out = self.llm.generate(ids, attention_mask=torch.ones_like(ids),
                                    **_generate_kwargs(max_new_tokens, fixed))
        return self.tok.decode(out[0, ids.shape[1]:], skip_special_tokens=True)


def synth_clips(directory: Path, n: int) -> list[str]:
    """n short spoken questions (espeak-ng when installed, else a generated signal) as wav files."""
    import soundfile as sf

    from aura_jax.synth import synthesize

    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        path = directory / f"q{i:03d}.wav"
        if not path.exists():
            sf.write(path, synthesize(QUESTIONS[i % len(QUESTIONS)], seed=i), 16000)
        paths.append(str(path))
    return paths


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
            _sync(device)
            start = time.perf_counter()
            sample = system(clips[i % len(clips)], question, max_new_tokens, fixed_length, asr_tokens)
            _sync(device)
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
                                                         "of --clip-seconds (aura_jax/bench_stream.py)")
    s.add_argument("--clip-seconds", default="2,5,10,30", help="clip lengths (default 2,5,10,30)")
    s.add_argument("--chunk-patches", type=int, default=5, help="audio patches per prefilled chunk (default 5)")
    s.add_argument("--piece-seconds", type=float, default=0.1, help="audio arrives in pieces of this length")
    s.add_argument("--jax-run", default=None, metavar="RUN_DIR",
                   help="also time the JAX student of this training run (the run EXPORT was exported from)")
    g = p.add_argument_group("batched generation (--generation): JAX generate_aura vs transformers generate")
    g.add_argument("--generation", action="store_true",
                   help="needs --jax-run; samples/s at each of --batch-sizes (aura_jax/bench_generate.py)")
    g.add_argument("--batch-sizes", default="1,8,32", help="--generation: batch sizes (default 1,8,32)")
    g.add_argument("--floor", action="store_true",
                   help="--generation: also time prefill + first token, and bound the speed-up by what this "
                        "CPU's best matmul, matrix-vector and memory-read rates allow (JAX or PyTorch, float32)")


def _generation_main(args) -> int:
    from aura_jax.bench_generate import format_generation_table, run_generation_benchmark
    from aura_jax.config import ConfigError

    if not args.jax_run:
        raise ConfigError("--generation compares JAX with transformers: give --jax-run RUN_DIR (the run EXPORT "
                          "was exported from)")
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    sizes = [int(x) for x in args.batch_sizes.split(",") if x]
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
    from aura_jax.infer import check_exported

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
    if getattr(args, "floor", False) and not getattr(args, "generation", False):
        raise ConfigError("--floor bounds the --generation comparison: give it with --generation")
    if args.n < 1 or args.warmup < 0 or getattr(args, "chunk_patches", 1) < 1:
        raise ConfigError(f"--n {args.n} must be >= 1, --warmup {args.warmup} >= 0, --chunk-patches >= 1")


def main(args) -> int:
    _check_arguments(args)
    if getattr(args, "generation", False):
        return _generation_main(args)
    if getattr(args, "stream", False):
        from aura_jax import bench_stream

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
