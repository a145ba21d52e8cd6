"""`aura-jax bench-infer EXPORT --generation --jax-run RUN`: batched AuRA generation, JAX
(`generate_aura` on the run's student) against transformers' `generate` (the export of that run),
on the same log-mel features and prompt, greedy, exactly `--max-new-tokens` new tokens, at each
of `--batch-sizes`. Runs are interleaved (JAX, transformers, next batch size, ...) after one
warm-up of each (the JAX compile); samples/s from the medians.

`--floor` adds what no implementation can beat on this machine, as a bound on the speed-up: the
prefill's weight matmuls at the best plain-matmul rate measured here (JAX or PyTorch, at the
prefill's MLP shape), plus one read of every weight per decode step at the memory's read bandwidth
(and, a practical bound, at the best matrix-vector rate measured at the decode step's shape). It
also times prefill + first token on each side. Attention, norms and the audio embedding are left
out of the floor, so it is a lower bound.
"""

from __future__ import annotations

import statistics
import time

import numpy as np

from aura_jax.bench.clips import DEFAULT_QUESTION, speech_clip


def _timed(run) -> tuple[float, np.ndarray]:
    start = time.perf_counter()
    out = run()
    return time.perf_counter() - start, out


def qwen2_weight_counts(config: dict) -> dict:
    """Weights a forward pass multiplies by, from a Qwen2 config.json: the decoder layers'
    projections and the LM head (biases and norms are negligible and left out)."""
    h, inter, heads, kv = (config[k] for k in ("hidden_size", "intermediate_size", "num_attention_heads",
                                               "num_key_value_heads"))
    hd = config.get("head_dim") or h // heads
    per_layer = h * heads * hd + 2 * h * kv * hd + heads * hd * h + 3 * h * inter
    return {"layers": config["num_hidden_layers"] * per_layer, "lm_head": h * config["vocab_size"]}


def _best_seconds(run, n: int) -> float:
    run()
    times = []
    for _ in range(n):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return min(times)


def l3_bytes() -> int | None:
    try:
        size = open("/sys/devices/system/cpu/cpu0/cache/index3/size").read().strip()
    except OSError:
        return None
    units = {"K": 1024, "M": 1024 ** 2, "G": 1024 ** 3}
    return int(size[:-1]) * units[size[-1]] if size[-1] in units else int(size)


def machine_rates(hidden: int, intermediate: int, tokens: int, batch: int, *, n: int = 5) -> dict:
    """The best this machine does at generation's two kinds of work, in JAX and PyTorch (float32):
    matmul GFLOP/s at the prefill's MLP shape [tokens, hidden] @ [hidden, intermediate]; matrix-vector
    GB/s of weights at a decode step's [batch, hidden] @ [hidden, intermediate], over 128 MB of distinct
    weights (more than a last-level cache holds; at most 64 matrices); and read GB/s, a sum over a
    512 MB array."""
    import jax
    import jax.numpy as jnp
    import torch

    rates: dict = {"matmul_gflops": {}, "matvec_gbs": {}, "read_gbs": {}}
    flops = 2 * tokens * hidden * intermediate
    x, w = jnp.ones((tokens, hidden)), jnp.ones((hidden, intermediate))
    dot = jax.jit(jnp.dot)
    rates["matmul_gflops"]["jax"] = flops / _best_seconds(lambda: dot(x, w).block_until_ready(), n) / 1e9
    xt, wt = torch.ones(tokens, hidden), torch.ones(hidden, intermediate)
    rates["matmul_gflops"]["torch"] = flops / _best_seconds(lambda: xt @ wt, n) / 1e9
    del x, w, xt, wt
    copies = min(64, max(1, (128 << 20) // (4 * hidden * intermediate)))  # (one jitted dot each: at most 64)
    nbytes = copies * 4 * hidden * intermediate
    v, ws = jnp.ones((batch, hidden)), [jnp.full((hidden, intermediate), i, jnp.float32) for i in range(copies)]
    matvecs = jax.jit(lambda v, ws: [v @ w for w in ws])
    rates["matvec_gbs"]["jax"] = nbytes / _best_seconds(lambda: jax.block_until_ready(matvecs(v, ws)), n) / 1e9
    vt, wts = torch.ones(batch, hidden), [torch.full((hidden, intermediate), float(i)) for i in range(copies)]
    rates["matvec_gbs"]["torch"] = nbytes / _best_seconds(lambda: [vt @ w for w in wts], n) / 1e9
    del v, ws, vt, wts
    big, big_t = jnp.ones((128 << 20,)), torch.ones(128 << 20)
    total = jax.jit(jnp.sum)
    rates["read_gbs"]["jax"] = big.nbytes / _best_seconds(lambda: total(big).block_until_ready(), n) / 1e9
    rates["read_gbs"]["torch"] = big.nbytes / _best_seconds(lambda: big_t.sum(), n) / 1e9
    return {k: dict(v, best=max(v.values())) for k, v in rates.items()}


def generation_floor(counts: dict, batch: int, sequence: int, max_new_tokens: int, rates: dict,
                     bytes_per_weight: int = 4) -> dict:
    """Lower bounds (s) for greedy generation: the prefill's weight matmuls (every position through the
    layers, the LM head on the last) at the best matmul rate; then each of the other new tokens
    reads every weight once, at the read bandwidth (`decode_s`) or the best matrix-vector rate
    (`decode_s_matvec`). The read bound holds when the weights exceed the last-level cache."""
    prefill_flops = 2 * batch * sequence * counts["layers"] + 2 * batch * counts["lm_head"]
    decode_bytes = (max_new_tokens - 1) * bytes_per_weight * (counts["layers"] + counts["lm_head"])
    prefill_s = prefill_flops / (rates["matmul_gflops"]["best"] * 1e9)
    decode_s = decode_bytes / (rates["read_gbs"]["best"] * 1e9)
    decode_s_matvec = decode_bytes / (rates["matvec_gbs"]["best"] * 1e9)
    return {"prefill_gflop": prefill_flops / 1e9, "decode_gb": decode_bytes / 1e9, "prefill_s": prefill_s,
            "decode_s": decode_s, "decode_s_matvec": decode_s_matvec, "total_s": prefill_s + decode_s,
            "total_s_matvec": prefill_s + decode_s_matvec}


def run_generation_benchmark(exported: str, jax_run: str, *, batch_sizes=(1, 8, 32), max_new_tokens: int = 32,
                             n: int = 3, clip_seconds: float = 5.0, question: str = DEFAULT_QUESTION,
                             floor: bool = False) -> dict:
    import torch

    from aura_jax.bench.machine import load_average
    from aura_jax.bench.stream import JaxAura
    from aura_jax.inference.generate import generate_aura
    from aura_jax.torch import AuraSpeechLM

    lm = AuraSpeechLM.from_pretrained(exported, dtype="float32")
    jax_aura = JaxAura(jax_run)
    features = lm.features(speech_clip(clip_seconds))  # [n_mels, L], the same array for both sides
    ids = jax_aura.ids(question)
    if ids != lm.prompt_ids(question):
        raise ValueError("the run's and the export's prompt ids differ: is EXPORT an export of --jax-run?")
    row = lm._row(ids, features)

    def jax_side(b, new=max_new_tokens):
        return lambda: np.asarray(generate_aura(jax_aura.model, np.tile(np.asarray([ids]), (b, 1)),
                                                np.ones((b, len(ids)), bool), np.tile(features[None], (b, 1, 1)),
                                                max_new_tokens=new, eos_token_id=None,
                                                pad_token_id=jax_aura.tok.pad_token_id))

    def torch_side(b, new=max_new_tokens):
        embeds = row[None].expand(b, -1, -1).contiguous()
        mask = torch.ones(embeds.shape[:2], dtype=torch.long)

        def run():
            with torch.no_grad():
                return lm.model.generate(inputs_embeds=embeds, attention_mask=mask, max_new_tokens=new,
                                         min_new_tokens=new, do_sample=False,
                                         pad_token_id=lm.pad_token_id).numpy()
        return run

    load_before = load_average()
    sides = {b: {"jax": jax_side(b), "transformers": torch_side(b)} for b in batch_sizes}
    if floor:  # prefill + the first token, on each side
        for b in batch_sizes:
            sides[b].update({"jax_prefill": jax_side(b, 1), "transformers_prefill": torch_side(b, 1)})
    times = {(b, s): [] for b in batch_sizes for s in sides[b]}
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
        if floor:
            rows[-1].update({f"{s}_s": statistics.median(times[(b, s)]) for s in ("jax_prefill", "transformers_prefill")})
    result = {"rows": rows, "max_new_tokens": max_new_tokens, "n": n, "sequence": int(row.shape[0]),
              "load_average": {"before": load_before, "after": load_average()}}
    if floor:
        config = lm.model.config.to_dict()
        counts = qwen2_weight_counts(config)
        for x in rows:  # the machine's rates at this batch size's shapes
            x["rates"] = machine_rates(config["hidden_size"], config["intermediate_size"],
                                       x["batch"] * int(row.shape[0]), x["batch"])
        # a prefill can be cut into any batch's token blocks, and memory is read at its best rate
        # whatever the shape: those two bounds take the best over every measured shape
        best = {k: max(x["rates"][k]["best"] for x in rows) for k in ("matmul_gflops", "read_gbs")}
        for x in rows:
            rates = {**{k: {"best": v} for k, v in best.items()}, "matvec_gbs": x["rates"]["matvec_gbs"]}
            x["floor"] = generation_floor(counts, x["batch"], int(row.shape[0]), max_new_tokens, rates)
            x["max_speedup"] = x["transformers_s"] / x["floor"]["total_s"]
            x["max_speedup_matvec"] = x["transformers_s"] / x["floor"]["total_s_matvec"]
        weight_bytes = 4 * (counts["layers"] + counts["lm_head"])
        result.update(weights=counts, best_rates=best, weight_bytes=weight_bytes, l3_bytes=l3_bytes(),
                      load_average_after_rates=load_average())
    return result


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
    if "weights" in r:
        l3 = r["l3_bytes"]
        lines += ["", f"Floor, a lower bound on the time (aura_jax/bench/generation.py): weights "
                  f"{r['weight_bytes'] / 1e6:.0f} MB, last-level cache {'unknown' if l3 is None else f'{l3 / 1e6:.0f} MB'}; "
                  f"the machine's best rates at each batch's shapes (JAX or PyTorch); the floor takes the best "
                  f"matmul ({r['best_rates']['matmul_gflops']:.1f} GFLOP/s) and read "
                  f"({r['best_rates']['read_gbs']:.1f} GB/s) rates over all of them:", "",
                  "| batch | prefill + 1 token: JAX s | transformers s | matmul GFLOP/s | prefill floor s | "
                  "read / matrix-vector GB/s | decode floor s (read / matvec) | total floor s (read / matvec) | "
                  "most speed-up over transformers (read / matvec) |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for x in r["rows"]:
            f, rt = x["floor"], x["rates"]
            lines.append(f"| {x['batch']} | {x['jax_prefill_s']:.3f} | {x['transformers_prefill_s']:.3f} | "
                         f"{rt['matmul_gflops']['best']:.1f} | {f['prefill_s']:.3f} | {rt['read_gbs']['best']:.1f} / "
                         f"{rt['matvec_gbs']['best']:.1f} | {f['decode_s']:.3f} / {f['decode_s_matvec']:.3f} | "
                         f"{f['total_s']:.3f} / {f['total_s_matvec']:.3f} | {x['max_speedup']:.2f}× / "
                         f"{x['max_speedup_matvec']:.2f}× |")
    return "\n".join(lines)
