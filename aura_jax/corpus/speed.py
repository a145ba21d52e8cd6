"""`aura-jax bench-engines`: how fast each training engine of corpus version 4 speaks, on this machine.

The corpus's build time is decided by its slowest engine's share of the clips (docs/TRAINING.md,
"Corpus version 4"). Each engine speaks the same sentences as one of its training speakers, one clip
at a time in this process (a corpus worker's view: onnxruntime and the engines' own threads as they
come); the first clip of each engine loads its model and is not timed. Reported per engine: seconds
of audio per second of wall time (× real time) and seconds per clip, with the CPU's model name and the
load average before and after.
"""

from __future__ import annotations

import json
import os
import time

import numpy as np

from aura_jax.audio import SAMPLING_RATE
from aura_jax.corpus import voices
from aura_jax.corpus.sentences import TEST_QUESTIONS

# One training speaker per engine, each at its default parameters.
SPEAKERS = {"espeak-ng": voices.Speaker("espeak-ng", "en-us", (("pitch", "lo"),)),
            "flite": voices.Speaker("flite", "awb"),
            "piper": voices.Speaker("piper", "joe", (("noise", 0.667), ("length", 1.0))),
            "kokoro": voices.Speaker("kokoro", "jf_alpha")}


def cpu_model() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown"


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def engine_speed(engines=voices.ENGINES, sentences: int = 4, seed: int = 0) -> dict:
    """{"engines": [{engine, speaker, clips, audio_s, wall_s, x_real_time, s_per_clip}], machine facts}."""
    from aura_jax.corpus.spoken import _speak

    unknown = [e for e in engines if e not in SPEAKERS]
    if unknown:
        raise ValueError(f"--engines: {unknown} (use some of {list(SPEAKERS)})")
    texts = [q for q, *_ in TEST_QUESTIONS[:sentences]]
    before, rows = load_average(), []
    for engine in engines:
        speaker, rng = SPEAKERS[engine], np.random.default_rng(seed)
        _speak(speaker, texts[0], rng)  # loads the engine's model
        audio = wall = 0.0
        for text in texts:
            start = time.perf_counter()
            wave = _speak(speaker, text, rng)
            wall += time.perf_counter() - start
            audio += len(wave) / SAMPLING_RATE
        rows.append({"engine": engine, "speaker": speaker.id, "clips": len(texts), "audio_s": round(audio, 2),
                     "wall_s": round(wall, 3), "x_real_time": round(audio / wall, 2),
                     "s_per_clip": round(wall / len(texts), 3)})
    return {"engines": rows, "cpu": cpu_model(), "load_average": {"before": before, "after": load_average()}}


def format_speed(r: dict) -> str:
    lines = ["| engine | speaker | clips | audio s | × real time | s per clip |", "|---|---|---|---|---|---|"]
    lines += [f"| {x['engine']} | {x['speaker']} | {x['clips']} | {x['audio_s']:.1f} | {x['x_real_time']:.1f} | "
              f"{x['s_per_clip']:.3f} |" for x in r["engines"]]
    load = r["load_average"]
    lines.append(f"\nCPU: {r['cpu']}; load average before {load['before']}, after {load['after']}.")
    return "\n".join(lines)


def add_arguments(p) -> None:
    p.add_argument("--engines", default=",".join(voices.ENGINES), help="comma-separated (default: all four)")
    p.add_argument("--sentences", type=int, default=4, help="timed clips per engine (default 4)")
    p.add_argument("--json", default=None, help="write the figures here")


def main(args) -> int:
    r = engine_speed([e for e in args.engines.split(",") if e], args.sentences)
    print(format_speed(r))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(r, f, indent=1)
    return 0
