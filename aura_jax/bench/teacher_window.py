"""`aura-jax bench-teacher-window WHISPER_DIR CLIPS_DIR`: how far the distillation targets move when the
teacher hears the clip's bucket (`audio.teacher_frames=bucket`, positions sliced) instead of Whisper's 30 s
window, layer by layer, on the targets the loss sees (each layer's states aligned to the student's tokens),
and how much faster the teacher's forward is.

Per clip of CLIPS_DIR (a CommonVoice-layout directory: validated.tsv + clips/): the log-mel of the clip,
its bucket (the smallest of `--buckets` holding its valid frames), the teacher's hidden states of layers
1..K on the full window and on the bucket, each regrouped and aligned to bucket / patch tokens exactly as
training does (`distill.regroup_and_align`). Reported per layer: mean cosine of the aligned targets, and
their relative L2 difference ‖bucket − full‖ / ‖full‖ (median and max over clips)."""

from __future__ import annotations

import json
import statistics
import time
from pathlib import Path


def add_arguments(p) -> None:
    p.add_argument("whisper", help="Hugging Face Whisper directory (the teacher)")
    p.add_argument("clips", help="CommonVoice-layout directory (validated.tsv + clips/)")
    p.add_argument("--n", type=int, default=24, help="clips (default 24)")
    p.add_argument("--layers", type=int, default=4, help="teacher layers 1..K (default 4)")
    p.add_argument("--buckets", default="100,200,300,400,500,600", help="student buckets in mel frames")
    p.add_argument("--patch-frames", type=int, default=10)
    p.add_argument("--json", default=None)


def compare(whisper: str, clips: str, *, n: int, layers: int, buckets: list[int], patch_frames: int) -> dict:
    import jax
    import jax.numpy as jnp
    import numpy as np

    from aura_jax.audio import SAMPLING_RATE, load_audio, log_mel_segments
    from aura_jax.distill import regroup_and_align
    from aura_jax.hf import from_pretrained

    teacher = from_pretrained(whisper, "float32", num_layers=layers)
    mels = teacher.config.num_mel_bins
    forward = jax.jit(lambda x: teacher(x, output_hidden_states=True).hidden_states[1:layers + 1])
    rows = [line.split("\t") for line in (Path(clips) / "validated.tsv").read_text().splitlines()[1:]][:n]
    per_layer = {t: {"cos": [], "rel_l2": []} for t in range(1, layers + 1)}
    seconds = {"full": [], "bucket": []}
    for row in rows:
        wave = load_audio(str(Path(clips) / "clips" / row[1]), SAMPLING_RATE)
        segs, valid = log_mel_segments(wave, SAMPLING_RATE, mels, max_segments=1)
        v = int(valid[0])
        bucket = next((b for b in buckets if b >= v), 3000)
        tokens = bucket // patch_frames
        outs = {}
        for name, frames in (("full", 3000), ("bucket", bucket)):
            x = jnp.asarray(segs[:, :, :frames])
            jax.block_until_ready(forward(x))  # compiled once per shape, then timed
            start = time.perf_counter()
            hidden = jax.block_until_ready(forward(x))
            seconds[name].append(time.perf_counter() - start)
            outs[name] = [np.asarray(regroup_and_align(h[:, None], jnp.asarray([[v]]), tokens))[0] for h in hidden]
        for t, (full, part) in enumerate(zip(outs["full"], outs["bucket"]), start=1):
            cos = (full * part).sum(-1) / (np.linalg.norm(full, axis=-1) * np.linalg.norm(part, axis=-1) + 1e-8)
            per_layer[t]["cos"].append(float(cos.mean()))
            per_layer[t]["rel_l2"].append(float(np.linalg.norm(part - full) / np.linalg.norm(full)))
    summary = {t: {"cos_median": statistics.median(d["cos"]), "cos_min": min(d["cos"]),
                   "rel_l2_median": statistics.median(d["rel_l2"]), "rel_l2_max": max(d["rel_l2"])}
               for t, d in per_layer.items()}
    return {"clips": len(rows), "layers": summary,
            "teacher_forward_s": {k: statistics.median(v) for k, v in seconds.items()}}


def main(args) -> int:
    out = compare(args.whisper, args.clips, n=args.n, layers=args.layers,
                  buckets=[int(b) for b in args.buckets.split(",")], patch_frames=args.patch_frames)
    print("| teacher layer | cosine, median (min) | relative L2, median (max) |\n|---|---|---|")
    for t, s in out["layers"].items():
        print(f"| {t} | {s['cos_median']:.4f} ({s['cos_min']:.4f}) | {s['rel_l2_median']:.3f} ({s['rel_l2_max']:.3f}) |")
    f = out["teacher_forward_s"]
    print(f"\n{out['clips']} clips; the teacher's forward per clip: 30 s window {f['full'] * 1e3:.1f} ms, "
          f"bucket {f['bucket'] * 1e3:.1f} ms")
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1))
    return 0
