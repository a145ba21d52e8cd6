"""`aura-jax bench-infer EXPORT --stream [--cascade WHISPER LLM]`: the delay a person feels, from
the end of their speech to the first answer token (TTFT) and to the whole answer, for clips of
2, 5, 10 and 30 s: AuRA streaming (audio prefilled while it is heard), AuRA streaming with the
silence offline inference pads the clip with (its exact input), AuRA offline, and the cascade, in PyTorch; with
`--jax-run RUN_DIR` also the run's JAX student, streaming and offline. Same process, the systems
interleaved clip by clip.

Arrival is simulated on a virtual clock, not by sleeping: the clip comes in pieces of
`--piece-seconds` at real-time pace; each piece is processed when it has arrived and the stream is
free, and its measured compute time advances the clock. After the end of speech a stream first
works off any backlog (reported: a stream slower than real time falls behind), then the last
chunk, the prompt and the decoding. Offline systems start at the end of speech.
"""

from __future__ import annotations

import json
import os
import statistics
import time
from pathlib import Path

import numpy as np

from aura_jax.bench.clips import DEFAULT_QUESTION, speech_clip
from aura_jax.bench.machine import load_average, load_warning
from aura_jax.torch.systems import CascadeSystem, generate_kwargs, sync

CLIP_SECONDS = (2.0, 5.0, 10.0, 30.0)


class FirstToken:
    """A transformers streamer that notes when generate produces its first new token (generate
    calls `put` once with the prompt, then once per new token)."""

    def __init__(self, device: str):
        self.device, self.calls, self.time = device, 0, None

    def put(self, value) -> None:
        self.calls += 1
        if self.calls == 2:
            sync(self.device)
            self.time = time.perf_counter()

    def end(self) -> None:
        pass


def stream_latency(lm, wave, question: str, *, chunk_patches: int, piece_seconds: float, padded: bool,
                   max_new_tokens: int, fixed: bool, device: str) -> dict:
    """One streamed answer on the virtual clock: {ttft_s, total_s, backlog_s} after the end of speech."""
    from aura_jax.inference.streaming import realtime_chunks

    stream = lm.stream(question, chunk_patches=chunk_patches, padded=padded,
                       max_new_tokens=max_new_tokens, min_new_tokens=max_new_tokens if fixed else 0)
    duration, free, arrived = len(wave) / 16000, 0.0, 0
    for piece in realtime_chunks(wave, seconds=piece_seconds, pace=False):
        arrived += len(piece)
        start = time.perf_counter()
        stream.feed_audio(piece)
        getattr(stream, "wait", lambda: None)()
        sync(device)
        free = max(free, arrived / 16000) + time.perf_counter() - start
    backlog = max(free - duration, 0.0)
    start = time.perf_counter()
    stream.finish()
    sync(device)
    end = time.perf_counter()
    return {"ttft_s": backlog + stream.first_token_time - start, "total_s": backlog + end - start,
            "backlog_s": backlog}


class JaxAura:
    """A training run's JAX student behind the interface the bench uses (`stream(...)`, `offline(...)`)."""

    def __init__(self, run_dir: str):
        from aura_jax.tokenizer import ChatTokenizer, audio_prompt_ids
        from aura_jax.training.checkpoint import restore_student

        self.config, self.model, _ = restore_student(run_dir, None, ["model.random_init="])
        self.tok = ChatTokenizer.from_pretrained(self.config.model.llm, audio_token=self.config.prompt.audio_token)
        self.ids = lambda question: audio_prompt_ids(self.tok, self.config, question)

    def _eos(self, fixed: bool):  # fixed length: no eos, every answer decodes max_new_tokens
        return None if fixed else [self.tok.eos_token_id]

    def stream(self, question, *, chunk_patches, padded, max_new_tokens, min_new_tokens):
        from aura_jax.inference.generate import AuraStream

        return AuraStream(self.model, self.ids(question), chunk_patches=chunk_patches, padded=padded,
                          max_new_tokens=max_new_tokens, eos_token_id=self._eos(min_new_tokens > 0),
                          pad_token_id=self.tok.pad_token_id)

    def offline(self, wave, question: str, max_new_tokens: int, fixed: bool):
        from aura_jax.audio import log_mel_spectrogram
        from aura_jax.inference.generate import generate_aura

        a, ids = self.config.audio, self.ids(question)
        features = log_mel_spectrogram(wave, a.sampling_rate, a.n_mels)[None, :, :a.num_frames]
        out = generate_aura(self.model, np.asarray([ids]), np.ones((1, len(ids)), bool), features,
                            max_new_tokens=max_new_tokens, eos_token_id=self._eos(fixed),
                            pad_token_id=self.tok.pad_token_id)
        return np.asarray(out)


def jax_offline_latency(jax_aura: JaxAura, wave, question: str, *, max_new_tokens: int, fixed: bool,
                        device: str) -> dict:
    """JAX offline: generate_aura on the whole clip's features, timed to one new token (TTFT) and to all."""
    start = time.perf_counter()
    jax_aura.offline(wave, question, 1, fixed)
    first = time.perf_counter()
    jax_aura.offline(wave, question, max_new_tokens, fixed)
    return {"ttft_s": first - start, "total_s": time.perf_counter() - first}  # two runs: noise may invert them


def offline_latency(lm, wave, question: str, *, max_new_tokens: int, fixed: bool, device: str) -> dict:
    """AuRA offline: features of the whole clip, one-shot prefill, decoding; all after the end of speech."""
    import torch

    first = FirstToken(device)
    start = time.perf_counter()
    embeds, mask, _ = lm.prepare(wave, question)
    lm.arm(lm.audio_mask)  # an adapter export: its LoRA at the audio positions of the prefill (others: no-op)
    with torch.no_grad():
        lm.model.generate(inputs_embeds=embeds, attention_mask=mask, streamer=first, pad_token_id=lm.pad_token_id,
                          **generate_kwargs(max_new_tokens, fixed))
    sync(device)
    end = time.perf_counter()
    return {"ttft_s": first.time - start, "total_s": end - start}


def cascade_latency(cascade: CascadeSystem, wave, question: str, *, max_new_tokens: int, asr_tokens: int,
                    fixed: bool, device: str) -> dict:
    """Whisper transcribes the whole clip, then the LLM answers the transcript."""
    import torch

    first = FirstToken(device)
    start = time.perf_counter()
    transcript = cascade.transcribe(wave, asr_tokens, fixed)
    messages = [{"role": "user", "content": f"{transcript}\n{question}"}]
    ids = cascade.tok.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt",
                                          return_dict=True)["input_ids"].to(cascade.device)
    with torch.no_grad():
        cascade.llm.generate(ids, attention_mask=torch.ones_like(ids), streamer=first,
                             **generate_kwargs(max_new_tokens, fixed))
    sync(device)
    end = time.perf_counter()
    return {"ttft_s": first.time - start, "total_s": end - start}


def run_stream_benchmark(exported: str, *, cascade: tuple[str, str] | None = None, device: str = "cpu",
                         dtype: str = "float32", n: int = 5, warmup: int = 1, clip_seconds=CLIP_SECONDS,
                         chunk_patches: int = 5, piece_seconds: float = 0.1, max_new_tokens: int = 32,
                         asr_tokens: int = 32, fixed_length: bool = True, question: str = DEFAULT_QUESTION,
                         jax_run: str | None = None, log=print) -> dict:
    import torch

    from aura_jax.torch import AuraSpeechLM

    torch_dtype = getattr(torch, dtype)
    lm = AuraSpeechLM.from_pretrained(exported, device=device, dtype=torch_dtype)
    window_s = lm.aura["audio"]["num_frames"] / 100
    lengths = [s for s in clip_seconds if s <= window_s]
    skipped = [s for s in clip_seconds if s > window_s]
    if skipped:
        log(f"clips of {', '.join(f'{s:g}' for s in skipped)} s are longer than the model's {window_s:g} s "
            f"window: left out")
    if not lengths:
        from aura_jax.config import ConfigError

        raise ConfigError(f"--clip-seconds: every clip is longer than the model's {window_s:g} s window")
    casc = CascadeSystem(cascade[0], cascade[1], device, torch_dtype) if cascade else None
    kw = dict(max_new_tokens=max_new_tokens, fixed=fixed_length, device=device)
    systems = {
        "AuRA streaming": lambda w: stream_latency(lm, w, question, chunk_patches=chunk_patches,
                                                   piece_seconds=piece_seconds, padded=False, **kw),
        "AuRA streaming + padding": lambda w: stream_latency(lm, w, question, chunk_patches=chunk_patches,
                                                             piece_seconds=piece_seconds, padded=True, **kw),
        "AuRA offline": lambda w: offline_latency(lm, w, question, **kw),
    }
    if jax_run:
        jax_aura = JaxAura(jax_run)
        systems["AuRA streaming (JAX)"] = lambda w: stream_latency(
            jax_aura, w, question, chunk_patches=chunk_patches, piece_seconds=piece_seconds, padded=False, **kw)
        systems["AuRA offline (JAX)"] = lambda w: jax_offline_latency(jax_aura, w, question, **kw)
    if casc:
        systems["Cascade"] = lambda w: cascade_latency(casc, w, question, asr_tokens=asr_tokens, **kw)
    clips = {s: speech_clip(s) for s in lengths}
    load_before = load_average()
    samples = {(name, s): [] for name in systems for s in lengths}
    for rep in range(warmup + n):  # interleaved: every system on every clip length, round after round
        for s in lengths:
            for name, measure in systems.items():
                r = measure(clips[s])
                if rep >= warmup:
                    samples[(name, s)].append(r)
    rows = []
    for (name, s), rs in samples.items():
        row = {"system": name, "clip_s": s, "n": len(rs)}
        for key in ("ttft_s", "total_s", "backlog_s"):
            if key in rs[0]:
                row[key] = statistics.median(r[key] for r in rs)
        rows.append(row)
    return {"device": device if not device.startswith("cuda") else torch.cuda.get_device_name(), "dtype": dtype,
            "n": n, "warmup": warmup, "chunk_patches": chunk_patches, "patch_s": lm.aura["audio"]["patch_frames"] / 100,
            "piece_s": piece_seconds, "max_new_tokens": max_new_tokens, "asr_tokens": asr_tokens,
            "fixed_length": fixed_length, "window_s": window_s, "skipped_clip_s": skipped, "rows": rows,
            "load_average": {"before": load_before, "after": load_average(), "cores": os.cpu_count()}}


def format_stream_table(r: dict) -> str:
    lengths = sorted({row["clip_s"] for row in r["rows"]})
    systems = list(dict.fromkeys(row["system"] for row in r["rows"]))
    by = {(row["system"], row["clip_s"]): row for row in r["rows"]}
    head = "| system | " + " | ".join(f"{s:g} s clip" for s in lengths) + " |"
    lines = ["Time to first token after the end of speech, median s (total answer time in brackets):", "",
             head, "|---|" + "---|" * len(lengths)]
    for name in systems:
        cells = [f"{by[(name, s)]['ttft_s']:.3f} ({by[(name, s)]['total_s']:.3f})" for s in lengths]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    backlog = [f"{s:g} s: {by[('AuRA streaming', s)]['backlog_s']:.3f}" for s in lengths]
    lines += ["", "streaming backlog at the end of speech (s; 0 = kept up with real time): " + ", ".join(backlog)]
    return "\n".join(lines)


def main(args) -> int:
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    seconds = [float(x) for x in args.clip_seconds.split(",") if x] if args.clip_seconds else list(CLIP_SECONDS)
    r = run_stream_benchmark(args.exported, cascade=tuple(args.cascade) if args.cascade else None, device=args.device,
                             dtype=args.dtype, n=args.n, warmup=args.warmup, clip_seconds=seconds,
                             chunk_patches=args.chunk_patches, piece_seconds=args.piece_seconds,
                             max_new_tokens=args.max_new_tokens, asr_tokens=args.asr_tokens,
                             fixed_length=not args.free_length, jax_run=args.jax_run)
    print(f"device: {r['device']}, dtype {r['dtype']}, {r['n']} rounds ({r['warmup']} warm-up excluded), "
          f"{r['max_new_tokens']} new tokens{' (fixed length)' if r['fixed_length'] else ''}; chunks of "
          f"{r['chunk_patches']} patches ({r['chunk_patches'] * r['patch_s']:g} s), audio arriving in "
          f"{r['piece_s']:g} s pieces; load average before {r['load_average']['before']}, after "
          f"{r['load_average']['after']}")
    warning = load_warning(r["load_average"]["before"], r["load_average"]["cores"])
    if warning:
        print(warning)
    print(format_stream_table(r))
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(r, indent=2))
    print(f"wrote {args.json}")
    return 0
