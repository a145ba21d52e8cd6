"""`aura-jax bench-infer EXPORT --generation --jax-run RUN`: batched AuRA generation, JAX
(`generate_aura` on the run's student) against transformers' `generate` (the export of that run),
on the same log-mel features and prompt, greedy, exactly `--max-new-tokens` new tokens, at each
of `--batch-sizes`. Runs are interleaved (JAX, transformers, next batch size, ...) after one
warm-up of each (the JAX compile); samples/s from the medians.
"""

from __future__ import annotations

import statistics
import time

import numpy as np

from aura_jax.bench_infer import DEFAULT_QUESTION


def _timed(run) -> tuple[float, np.ndarray]:
    start = time.perf_counter()
    out = run()
    return time.perf_counter() - start, out


def run_generation_benchmark(exported: str, jax_run: str, *, batch_sizes=(1, 8, 32), max_new_tokens: int = 32,
                             n: int = 3, clip_seconds: float = 5.0, question: str = DEFAULT_QUESTION) -> dict:
    import torch

    from aura_jax.bench_stream import JaxAura, speech_clip
    from aura_jax.bench_train import load_average
    from aura_jax.generate import generate_aura
    from aura_jax.torch import AuraSpeechLM

    lm = AuraSpeechLM.from_pretrained(exported, dtype="float32")
    jax_aura = JaxAura(jax_run)
    features = lm.features(speech_clip(clip_seconds))  # [n_mels, L], the same array for both sides
    ids = jax_aura.ids(question)
    if ids != lm.prompt_ids(question):
        raise ValueError("the run's and the export's prompt ids differ: is EXPORT an export of --jax-run?")
    row = lm._row(ids, features)

    def jax_side(b):
        return lambda: np.asarray(generate_aura(jax_aura.model, np.tile(np.asarray([ids]), (b, 1)),
                                                np.ones((b, len(ids)), bool), np.tile(features[None], (b, 1, 1)),
                                                max_new_tokens=max_new_tokens, eos_token_id=None,
                                                pad_token_id=jax_aura.tok.pad_token_id))

    def torch_side(b):
        embeds = row[None].expand(b, -1, -1).contiguous()
        mask = torch.ones(embeds.shape[:2], dtype=torch.long)

        def run():
            with torch.no_grad():
                return lm.model.generate(inputs_embeds=embeds, attention_mask=mask, max_new_tokens=max_new_tokens,
                                         min_new_tokens=max_new_tokens, do_sample=False,
                                         pad_token_id=lm.pad_token_id).numpy()
        return run

    load_before = load_average()
    sides = {b: {"jax": jax_side(b), "transformers": torch_side(b)} for b in batch_sizes}
    times = {(b, s): [] for b in batch_sizes for s in ("jax", "transformers")}
    same = {}
    for b in batch_sizes:  # warm-up (and JAX's compile for this batch size)
        outs = {s: run() for s, run in sides[b].items()}
        same[b] = bool(np.array_equal(outs["jax"][0], outs["transformers"][0]))
    for _ in range(n):
        for b in batch_sizes:
            for s, run in sides[b].items():
                times[(b, s)].append(_timed(run)[0])
    rows = []
    for b in batch_sizes:
        j, t = statistics.median(times[(b, "jax")]), statistics.median(times[(b, "transformers")])
        rows.append({"batch": b, "jax_s": j, "transformers_s": t, "jax_samples_per_s": b / j,
                     "transformers_samples_per_s": b / t, "jax_speedup": t / j, "same_first_row_tokens": same[b]})
    return {"rows": rows, "max_new_tokens": max_new_tokens, "n": n, "sequence": int(row.shape[0]),
            "load_average": {"before": load_before, "after": load_average()}}


def format_generation_table(r: dict) -> str:
    lines = [f"Greedy generation, {r['max_new_tokens']} new tokens, prompt + audio {r['sequence']} positions; medians "
             f"of {r['n']} interleaved runs; load average before {r['load_average']['before']}, after "
             f"{r['load_average']['after']}:", "",
             "| batch | JAX s | transformers s | JAX samples/s | transformers samples/s | JAX speed-up | same tokens |",
             "|---|---|---|---|---|---|---|"]
    for x in r["rows"]:
        lines.append(f"| {x['batch']} | {x['jax_s']:.3f} | {x['transformers_s']:.3f} | {x['jax_samples_per_s']:.2f} | "
                     f"{x['transformers_samples_per_s']:.2f} | {x['jax_speedup']:.2f}× | "
                     f"{'yes' if x['same_first_row_tokens'] else 'no'} |")
    return "\n".join(lines)
