"""`aura-jax bench-train CONFIG --parts`: where the training step's time goes, in JAX and in the
PyTorch reference, part by part, against a plain matmul on the same CPU.

Both frameworks time the same five nested programs on one batch. Each part is the difference of
two consecutive programs, so the parts add up to the whole step:

  student_forward            audio embedding, splice, LLM forward, CE
  student_backward           (student forward + backward of CE) − student forward
  teacher_forward            the frozen Whisper encoder to the deepest paired layer
  alignment_distill          (forward + backward of the whole loss) − student fwd+bwd − teacher
                             (the alignment, the heads, cos + MSE, their backward)
  optimizer                  the whole step − forward + backward of the whole loss (clip + AdamW)

JAX: each program jitted on its own (the step is `Trainer`'s compiled step). PyTorch:
`ReferenceStep` (transformers + peft); its forward runs with autograd recording, as in a step.
Rounds are interleaved (every program of both frameworks, then again) after a warm-up; medians.
FLOPs per part come from XLA's cost analysis of the JAX programs (the same math in both), and
the FLOP rate of a plain [tokens × hidden] @ [hidden × intermediate] matmul in each framework is
the ceiling each part is compared with.
"""

from __future__ import annotations

import dataclasses
import statistics
import time

import numpy as np

PROGRAMS = ("student_forward", "student_forward_backward", "teacher_forward", "loss_forward_backward", "step")
PARTS = ("student_forward", "student_backward", "teacher_forward", "alignment_distill", "optimizer")
MIN_RATE_S = 0.05  # parts shorter than this get no FLOP rate: a difference of two timings, mostly noise


def parts_of(programs: dict) -> dict:
    """Per-part values from the five nested programs' values (seconds or FLOPs)."""
    p = programs
    return {"student_forward": p["student_forward"],
            "student_backward": p["student_forward_backward"] - p["student_forward"],
            "teacher_forward": p["teacher_forward"],
            "alignment_distill": p["loss_forward_backward"] - p["student_forward_backward"] - p["teacher_forward"],
            "optimizer": p["step"] - p["loss_forward_backward"]}


def _flops(compiled) -> float | None:
    from aura_jax.bench.step import cost_analysis_flops

    return cost_analysis_flops(compiled)


def jax_programs(config, *, log=print):
    """{name: (run(), flops)} for the five JAX programs, compiled, on the bench's synthetic batch;
    plus each program's optimised HLO {name: text} (for `matmul_floor`), the host batch and the initial trainables (for the
    PyTorch side)."""
    import jax
    import jax.numpy as jnp
    from flax import nnx

    from aura_jax.bench.step import jax_setup, trainable_arrays
    from aura_jax.training.loss import aura_loss, student_cross_entropy

    trainer, host, batch, _ = jax_setup(config, log=log)
    # a copy: the step donates (and so deletes) the state's buffers
    graphdef, params, frozen = trainer.graphdef, jax.tree.map(jnp.copy, trainer.state.params), trainer.frozen

    def student_ce(params, frozen, batch):
        return student_cross_entropy(nnx.merge(graphdef, params, frozen), batch)[1]

    def teacher(params, frozen, batch):
        model = nnx.merge(graphdef, params, frozen)
        features = batch.get("teacher_features")  # [B, S, mel, 3000] when the student's window is shorter
        features = batch["audio_features"] if features is None else features.reshape((-1,) + features.shape[2:])
        hidden = model.teacher(features, output_hidden_states=True).hidden_states
        return [hidden[t] for t in model.teacher_layers]

    def whole_loss(params, frozen, batch):
        return aura_loss(nnx.merge(graphdef, params, frozen), batch)

    fns = {"student_forward": student_ce, "student_forward_backward": jax.value_and_grad(student_ce),
           "teacher_forward": teacher, "loss_forward_backward": jax.value_and_grad(whole_loss, has_aux=True)}
    programs, hlos = {}, {}
    for name, fn in fns.items():
        compiled = jax.jit(fn).lower(params, frozen, batch).compile()
        programs[name] = (lambda c=compiled: jax.block_until_ready(c(params, frozen, batch)), _flops(compiled))
        hlos[name] = compiled.as_text()
    step = trainer.compiled_step(batch)
    state = {"s": trainer.state}

    def run_step():
        state["s"], metrics = step(state["s"], frozen, batch)
        return jax.block_until_ready(metrics)

    programs["step"] = (run_step, _flops(step))
    hlos["step"] = step.as_text()
    return programs, hlos, host, trainable_arrays(params)


def torch_programs(config, host: dict, trainables: dict, *, threads: int | None = None) -> dict:
    """{name: run()} for the same five programs in the PyTorch reference (same weights, same batch)."""
    import torch

    from aura_jax.torch.reference_step import ReferenceStep, whisper_hidden_states

    if threads:
        torch.set_num_threads(threads)
    ref = ReferenceStep(config, trainables=trainables)
    batch = {k: np.asarray(v) for k, v in host.items() if k != "example_index"}
    full = ref.config
    ce_only = dataclasses.replace(full, loss=dataclasses.replace(full.loss, distill_weight=0.0))
    teacher_input = batch.get("teacher_features")
    teacher_input = (batch["audio_features"] if teacher_input is None
                     else teacher_input.reshape((-1,) + teacher_input.shape[2:]))
    features = torch.from_numpy(np.array(teacher_input, np.float32))

    def loss(config, backward: bool):
        ref.config = config
        try:
            ref.optimizer.zero_grad(set_to_none=True)
            value, _ = ref.loss(batch)
            if backward:
                value.backward()
        finally:
            ref.config = full

    def teacher():
        with torch.no_grad():
            whisper_hidden_states(ref.teacher, features)

    return {"student_forward": lambda: loss(ce_only, False), "student_forward_backward": lambda: loss(ce_only, True),
            "teacher_forward": teacher, "loss_forward_backward": lambda: loss(full, True),
            "step": lambda: ref.step(batch)}


def matmul_rates(m: int, k: int, n: int, *, repeats: int = 5) -> dict:
    """GFLOP/s of a float32 [m, k] @ [k, n] in JAX (jit) and PyTorch, best of `repeats` after a warm-up."""
    import jax
    import jax.numpy as jnp
    import torch

    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((m, k), np.float32), rng.standard_normal((k, n), np.float32)
    ja, jb, ta, tb = jnp.asarray(a), jnp.asarray(b), torch.from_numpy(a), torch.from_numpy(b)
    dot = jax.jit(jnp.dot)
    runs = {"jax": lambda: dot(ja, jb).block_until_ready(), "torch": lambda: torch.matmul(ta, tb)}
    out = {"shape": [m, k, n], "gflop": 2 * m * k * n / 1e9}
    for name, run in runs.items():
        run()
        best = min(_time(run) for _ in range(repeats))
        out[f"{name}_gflops"] = out["gflop"] / best
    return out


def einsum_spec(lhs_rank: int, rhs_rank: int, lhs_contracting, rhs_contracting, lhs_batch, rhs_batch) -> str:
    """The einsum of an XLA dot: output = batch dims (lhs order), lhs free dims, rhs free dims."""
    letters = iter("abcdefghijklmnopqrstuvwxyz")
    lhs = [next(letters) for _ in range(lhs_rank)]
    rhs = [None] * rhs_rank
    for l, r in zip((*lhs_batch, *lhs_contracting), (*rhs_batch, *rhs_contracting)):
        rhs[r] = lhs[l]
    rhs = [x or next(letters) for x in rhs]
    shared_rhs = {*rhs_batch, *rhs_contracting}
    out = ([lhs[d] for d in lhs_batch] + [x for d, x in enumerate(lhs) if d not in {*lhs_batch, *lhs_contracting}]
           + [x for d, x in enumerate(rhs) if d not in shared_rhs])
    return f"{''.join(lhs)},{''.join(rhs)}->{''.join(out)}"


_NUMPY_TYPES = {"f32": "float32", "bf16": "bfloat16", "f16": "float16", "f64": "float64"}


def matmul_floor(hlo_text: str, *, repeats: int = 3, cache: dict | None = None) -> dict:
    """Every matmul of a compiled program (its optimised HLO), timed alone at its shape in XLA and
    in PyTorch (best of `repeats`, the two interleaved), times how often the program runs it.

    Each dot is timed with the operand and result types the compiled program gives it (a
    bf16 × bf16 → f32 dot of the step is timed as `jax.lax.dot_general(bf16, bf16,
    preferred_element_type=f32)`; PyTorch as a bf16 einsum), so the sum is this program's own floor.
    It is the least time those kernels need for the program's matmuls with both cores to
    themselves: no elementwise work, no memory traffic between ops, no two ops sharing the cores.
    If the XLA sum alone exceeds a target time, no change to our code short of fewer FLOPs or a
    faster matmul kernel reaches it. `cache` ({key: best seconds}) shares timings between programs."""
    import jax
    import jax.numpy as jnp
    import torch

    from aura_jax.tools.hlo_stats import dots

    cache = {} if cache is None else cache
    groups: dict[tuple, dict] = {}
    for d in dots(hlo_text):
        key = (d["lhs_dtype"], d["rhs_dtype"], d["dtype"], d["lhs"], d["rhs"], d["lhs_contracting"],
               d["rhs_contracting"], d["lhs_batch"], d["rhs_batch"])
        g = groups.setdefault(key, {"count": 0, "flops": d["flops"]})
        g["count"] += d["count"]
    rng = np.random.default_rng(0)
    total = {"jax_s": 0.0, "torch_s": 0.0, "gflop": 0.0, "executions": 0, "shapes": len(groups), "by_shape": [],
             "by_type": {}}
    for key, g in groups.items():
        lt, rt, ot, lhs, rhs, lc, rc, lb, rb = key
        if key not in cache:
            ja = jnp.asarray(rng.standard_normal(lhs, np.float32), _NUMPY_TYPES.get(lt, lt))
            jb = jnp.asarray(rng.standard_normal(rhs, np.float32), _NUMPY_TYPES.get(rt, rt))
            out_type = jnp.dtype(_NUMPY_TYPES.get(ot, ot))
            ta, tb = (torch.from_numpy(np.array(x, np.float32)).to(getattr(torch, _NUMPY_TYPES.get(t, t)))
                      for x, t in ((ja, lt), (jb, rt)))
            xla = jax.jit(lambda x, y, dims=((lc, rc), (lb, rb)), o=out_type:
                          jax.lax.dot_general(x, y, dims, preferred_element_type=o))
            spec = einsum_spec(len(lhs), len(rhs), lc, rc, lb, rb)
            runs = {"jax": lambda: xla(ja, jb).block_until_ready(), "torch": lambda: torch.einsum(spec, ta, tb)}
            best = {name: float("inf") for name in runs}
            for i in range(repeats + 1):  # the first round compiles and warms up
                for name, run in runs.items():
                    seconds = _time(run)
                    if i:
                        best[name] = min(best[name], seconds)
            timed = xla.lower(ja, jb).compile().as_text()
            (t_dot,) = [d for d in dots(timed)][:1]
            cache[key] = {"jax": best["jax"], "torch": best["torch"], "spec": spec,
                          "timed_as": f"{t_dot['lhs_dtype']}×{t_dot['rhs_dtype']}→{t_dot['dtype']}"}
        c = cache[key]
        kind = f"{lt}×{rt}→{ot}"
        total["jax_s"] += g["count"] * c["jax"]
        total["torch_s"] += g["count"] * c["torch"]
        total["gflop"] += g["count"] * g["flops"] / 1e9
        total["executions"] += g["count"]
        t = total["by_type"].setdefault(kind, {"jax_s": 0.0, "gflop": 0.0, "executions": 0})
        t["jax_s"] += g["count"] * c["jax"]
        t["gflop"] += g["count"] * g["flops"] / 1e9
        t["executions"] += g["count"]
        total["by_shape"].append({"einsum": c["spec"], "lhs": lhs, "rhs": rhs, "types": kind,
                                  "timed_as": c["timed_as"], "count": g["count"],
                                  "jax_s": g["count"] * c["jax"], "torch_s": g["count"] * c["torch"],
                                  "gflop": g["count"] * g["flops"] / 1e9})
    total["by_shape"].sort(key=lambda x: -x["jax_s"])
    return total


def _time(run) -> float:
    start = time.perf_counter()
    run()
    return time.perf_counter() - start


def bench_parts(config, *, steps: int = 3, warmup: int = 1, torch_threads: int | None = None, log=print) -> dict:
    from aura_jax.bench.machine import load_average, physical_cores
    from aura_jax.hf import read_config

    load_before = load_average()
    jax_side, hlos, host, trainables = jax_programs(config, log=log)
    torch_side = torch_programs(config, host, trainables, threads=torch_threads or physical_cores())
    times = {(fw, name): [] for fw in ("jax", "torch") for name in PROGRAMS}
    for i in range(warmup + steps):  # interleaved: each program in JAX, then in PyTorch, round after round
        for name in PROGRAMS:
            for fw, run in (("jax", jax_side[name][0]), ("torch", torch_side[name])):
                seconds = _time(run)
                if i >= warmup:
                    times[(fw, name)].append(seconds)
    median = {fw: {name: statistics.median(times[(fw, name)]) for name in PROGRAMS} for fw in ("jax", "torch")}
    cache: dict = {}  # each shape and type timed once, shared by the five programs
    floors = {name: matmul_floor(hlos[name], cache=cache) for name in PROGRAMS}
    floor = floors["step"]
    flops = {name: jax_side[name][1] for name in PROGRAMS}
    llm = read_config(config.model.llm)
    tokens = host["input_ids"].shape[0] * (host["input_ids"].shape[1] - 1 + host["audio_features"].shape[-1]
                                           // config.audio.patch_frames)
    return {"programs": median, "flops": flops,
            "parts": {fw: parts_of(median[fw]) for fw in ("jax", "torch")},
            "part_flops": parts_of(flops) if all(v is not None for v in flops.values()) else None,
            "matmul": matmul_rates(tokens, int(llm["hidden_size"]), int(llm["intermediate_size"])),
            "matmul_floor": floor, "part_floor": parts_of({n: floors[n]["jax_s"] for n in PROGRAMS}),
            "program_floor": {n: floors[n]["jax_s"] for n in PROGRAMS}, "steps": steps, "warmup": warmup,
            "load_average": {"before": load_before, "after": load_average()}}


def format_parts(r: dict) -> str:
    pf = r["part_flops"]
    lines = ["| part | JAX s | PyTorch s | JAX / PyTorch | GFLOP (XLA) | JAX GFLOP/s | PyTorch GFLOP/s | "
             "XLA matmul floor s (step's types) | JAX / floor |",
             "|---|---|---|---|---|---|---|---|---|"]
    pfl = r.get("part_floor") or {}
    rows = [(name, r["parts"]["jax"][name], r["parts"]["torch"][name], pf[name] if pf else None, pfl.get(name))
            for name in PARTS]
    rows.append(("whole step", r["programs"]["jax"]["step"], r["programs"]["torch"]["step"], r["flops"]["step"],
                 r["matmul_floor"]["jax_s"]))
    for name, j, t, f, fl_s in rows:
        rate = lambda s: f"{f / 1e9 / s:.1f}" if f and s > MIN_RATE_S else "—"  # a tiny difference: noise
        ratio = f"{j / fl_s:.2f}" if fl_s and fl_s > 0 and j > MIN_RATE_S else "—"
        floor_s = f"{fl_s:.4f}" if fl_s is not None else "—"
        lines.append(f"| {name} | {j:.4f} | {t:.4f} | {j / t if t > 0 else float('nan'):.2f} | "
                     f"{f / 1e9 if f else float('nan'):.2f} | {rate(j)} | {rate(t)} | {floor_s} | {ratio} |")
    m, fl = r["matmul"], r["matmul_floor"]
    lines += ["", f"plain matmul {m['shape'][0]}×{m['shape'][1]} @ {m['shape'][1]}×{m['shape'][2]} "
              f"({m['gflop']:.2f} GFLOP): JAX {m['jax_gflops']:.1f} GFLOP/s, PyTorch {m['torch_gflops']:.1f} GFLOP/s",
              f"the step's {fl['executions']} matmuls ({fl['shapes']} shapes, {fl['gflop']:.1f} GFLOP), each timed "
              f"alone in the operand types the compiled step gives it ("
              + ", ".join(f"{k}: {v['executions']} dots, {v['gflop']:.1f} GFLOP, {v['jax_s']:.3f} s"
                          for k, v in sorted(fl.get("by_type", {}).items())) +
              f") with the cores to itself: XLA {fl['jax_s']:.3f} s, PyTorch kernels at the same shapes "
              f"{fl['torch_s']:.3f} s; JAX step / XLA matmuls alone {r['programs']['jax']['step'] / fl['jax_s']:.2f}, "
              f"PyTorch step / XLA matmuls alone {r['programs']['torch']['step'] / fl['jax_s']:.2f}",
              f"medians of {r['steps']} interleaved rounds after {r['warmup']} warm-up; load average before "
              f"{r['load_average']['before']}, after {r['load_average']['after']}. A part is the difference of two "
              f"nested programs, so a small part can come out negative within the noise (and XLA may overlap the "
              f"teacher with the student on the cores when both are in one program); below {MIN_RATE_S} s no rate."]
    return "\n".join(lines)
