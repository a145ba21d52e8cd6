"""`aura-jax bench-ops`: the two operations issue 16 found slow under XLA:CPU, each way the package
can compute them, against PyTorch, at the bench-cpu shapes (docs/BENCHMARKS.md, "Closing the gap").

attention  Whisper encoder self-attention (the teacher's): batch 4 × 1500 frames, d_model 384,
           6 heads × 64. Our `WhisperAttention` with each of `ATTENTION_IMPLS`, against transformers'
           `WhisperAttention` (sdpa) holding the same weights.
lora_mlp   forward + backward of a Qwen2 MLP (512 → 2048 → 512) with rank-64 LoRA on its three
           projections, batch 4 × 363 positions; gradients of every A, B and of the input.
           "3-D" computes the LoRA update over [batch, seq, features] (the package before issue 16),
           "2-D" over [tokens, features] (`LoRALinear` now); torch autograd of the same math.

Each side warms up once, then rounds interleave every variant; medians, and the load average.
"""

from __future__ import annotations

import statistics
import time

import numpy as np

ATTENTION_SHAPE = dict(batch=4, frames=1500, d_model=384, heads=6)
MLP_SHAPE = dict(batch=4, seq=363, hidden=512, intermediate=2048, rank=64)


def _median_times(runs: dict, rounds: int) -> dict:
    for run in runs.values():
        run()  # warm-up (and JAX's compile)
    times = {name: [] for name in runs}
    for _ in range(rounds):
        for name, run in runs.items():
            start = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def attention_runs(seed: int = 0) -> tuple[dict, float]:
    """{variant: run()} for the teacher's self-attention, and the largest |JAX − transformers| output."""
    import jax
    import jax.numpy as jnp
    import torch
    from flax import nnx
    from transformers import WhisperConfig
    from transformers.models.whisper.modeling_whisper import WhisperAttention as TorchWhisperAttention

    from aura_jax.models.qwen2 import ATTENTION_IMPLS
    from aura_jax.models.whisper import WhisperAttention

    s = ATTENTION_SHAPE
    module = WhisperAttention(s["d_model"], s["heads"], rngs=nnx.Rngs(seed), param_dtype=jnp.float32, dtype=jnp.float32)
    x = np.random.default_rng(seed).standard_normal((s["batch"], s["frames"], s["d_model"])).astype(np.float32)
    xj, runs, outs = jnp.asarray(x), {}, {}
    for impl in ATTENTION_IMPLS:
        module.attention = impl
        graphdef, state = nnx.split(module)
        fn = jax.jit(lambda state, x, g=graphdef: nnx.merge(g, state)(x))
        runs[f"jax {impl}"] = lambda fn=fn, state=state: fn(state, xj).block_until_ready()
        outs[impl] = np.asarray(fn(state, xj))

    config = WhisperConfig(d_model=s["d_model"], encoder_attention_heads=s["heads"])
    config._attn_implementation = "sdpa"
    ref = TorchWhisperAttention(s["d_model"], s["heads"], config=config).eval()
    with torch.no_grad():
        for name in ("q_proj", "k_proj", "v_proj", "out_proj"):
            ours = getattr(module, name)
            getattr(ref, name).weight.copy_(torch.from_numpy(np.asarray(ours.kernel[...]).T.copy()))
            if ours.bias is not None:
                getattr(ref, name).bias.copy_(torch.from_numpy(np.asarray(ours.bias[...])))
    xt = torch.from_numpy(x)

    def torch_run():
        with torch.no_grad():
            return ref(xt)[0]

    runs["torch sdpa"] = torch_run
    expected = torch_run().numpy()
    return runs, max(float(np.abs(o - expected).max()) for o in outs.values())


def _lora_3d(module, x):
    """`LoRALinear` as the package computed it before issue 16: its update over [batch, seq, features]."""
    import jax.numpy as jnp

    dtype = module.base.dtype
    update = jnp.dot(jnp.dot(x.astype(dtype), module.lora_a[...].astype(dtype)), module.lora_b[...].astype(dtype))
    return module.base(x) + module.scale * update


def lora_mlp_runs(seed: int = 0) -> tuple[dict, float]:
    """{variant: run()} for the LoRA MLP's forward + backward, and the largest |JAX − torch| gradient."""
    import jax
    import jax.numpy as jnp
    import torch
    from flax import nnx

    from aura_jax.models.layers import Linear
    from aura_jax.models.lora import LoRALinear, LoRAParam

    s = MLP_SHAPE
    rngs = nnx.Rngs(seed)
    shapes = {"gate": (s["hidden"], s["intermediate"]), "up": (s["hidden"], s["intermediate"]),
              "down": (s["intermediate"], s["hidden"])}
    layers = {}
    for name, (i, o) in shapes.items():
        layers[name] = LoRALinear(Linear(i, o, use_bias=False, axes=("embed", "mlp"), rngs=rngs), s["rank"],
                                  2.0 * s["rank"], rngs=rngs)
        layers[name].lora_b.set_value(jax.random.normal(rngs.params(), layers[name].lora_b.shape) * 0.02)
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((s["batch"], s["seq"], s["hidden"])).astype(np.float32)
    cotangent = rng.standard_normal((s["batch"], s["seq"], s["hidden"])).astype(np.float32)
    xj, cj = jnp.asarray(x), jnp.asarray(cotangent)

    def make(call):
        graphdef, params, frozen = nnx.split(nnx.Dict(layers), LoRAParam, ...)

        def loss(params, x):
            m = nnx.merge(graphdef, params, frozen)
            lin = {k: (lambda v, mod=m[k]: call(mod, v)) for k in shapes}
            return jnp.sum(lin["down"](jax.nn.silu(lin["gate"](x)) * lin["up"](x)) * cj)

        fn = jax.jit(jax.grad(loss, argnums=(0, 1)))
        return (lambda: jax.block_until_ready(fn(params, xj))), lambda: fn(params, xj)

    runs, grads = {}, {}
    for label, call in (("jax 3-D update", _lora_3d), ("jax 2-D update (LoRALinear)", LoRALinear.__call__)):
        runs[label], grads[label] = make(call)

    t = {k: (torch.from_numpy(np.asarray(layers[k].base.kernel[...])),
             torch.from_numpy(np.asarray(layers[k].lora_a[...])).requires_grad_(),
             torch.from_numpy(np.asarray(layers[k].lora_b[...])).requires_grad_()) for k in shapes}
    xt, ct = torch.from_numpy(x).requires_grad_(), torch.from_numpy(cotangent)
    scale = layers["gate"].scale

    def torch_run():
        for _, a, b in t.values():
            a.grad = b.grad = None
        xt.grad = None
        lin = {k: (lambda v, w=w, a=a, b=b: v @ w + scale * ((v @ a) @ b)) for k, (w, a, b) in t.items()}
        y = lin["down"](torch.nn.functional.silu(lin["gate"](xt)) * lin["up"](xt))
        (y * ct).sum().backward()
        return t["gate"][1].grad, xt.grad

    runs["torch autograd"] = torch_run
    ga, gx = (v.numpy() for v in torch_run())
    diff = 0.0
    for get in grads.values():
        p, dx = get()
        diff = max(diff, float(np.abs(np.asarray(p["gate"]["lora_a"].get_value()) - ga).max()),
                   float(np.abs(np.asarray(dx) - gx).max()))
    return runs, diff


def bench_ops(rounds: int = 5, threads: int | None = None) -> dict:
    import torch

    from aura_jax.bench.machine import load_average, physical_cores

    torch.set_num_threads(threads or physical_cores())
    before = load_average()
    out = {}
    for name, make in (("attention", attention_runs), ("lora_mlp", lora_mlp_runs)):
        runs, diff = make()
        out[name] = {"seconds": _median_times(runs, rounds), "max_abs_diff_vs_torch": diff}
    out["rounds"], out["load_average"] = rounds, {"before": before, "after": load_average()}
    return out


def format_ops(r: dict) -> str:
    lines = []
    for name, title in (("attention", "Whisper encoder self-attention, 4 × 1500 frames, 6 heads × 64 (forward)"),
                        ("lora_mlp", "Qwen2 MLP 512→2048→512 + rank-64 LoRA, 4 × 363 positions (forward + backward)")):
        part = r[name]
        lines += [f"{title}; max |JAX − PyTorch| {part['max_abs_diff_vs_torch']:.2e}", "| variant | ms |", "|---|---|"]
        lines += [f"| {variant} | {s * 1e3:.1f} |" for variant, s in part["seconds"].items()]
        lines.append("")
    lines.append(f"medians of {r['rounds']} interleaved rounds after a warm-up; load average before "
                 f"{r['load_average']['before']}, after {r['load_average']['after']}")
    return "\n".join(lines)


def add_arguments(p) -> None:
    p.add_argument("--rounds", type=int, default=5, help="timed rounds after the warm-up (default 5)")
    p.add_argument("--torch-threads", type=int, default=None, help="torch.set_num_threads (default: physical cores)")
    p.add_argument("--json", default=None, help="write the report as JSON here")


def main(args) -> int:
    import json
    from pathlib import Path

    r = bench_ops(args.rounds, args.torch_threads)
    print(format_ops(r))
    if args.json:
        Path(args.json).write_text(json.dumps(r, indent=2))
    return 0
