"""`aura-jax bench-profile CONFIG [overrides]`: where the compiled training step's time goes, op by op.

The step (`Trainer`'s compiled step on the bench's synthetic batch, as `bench-train`) runs under
`jax.profiler.trace`. XLA:CPU's thunk executor records one trace event per executed HLO
instruction (a fusion, a dot, a copy, ...; jax 0.10), named as in the optimised HLO, so the event
durations, matched to `compiled.as_text()`, give the time per op. Each op is put in a kind from
what it computes (a fusion by the ops of its fused computation):

  dot <lhs>×<rhs>→<out>   a dot (or a fusion holding one), by operand and result types
  convolution             a convolution (or a fusion holding one)
  transpose/copy          transposes, copies and pure data movement (slices, pads, concatenates, ...)
  convert                 type conversions only
  elementwise/reduction   everything else computed
  collective              all-reduce, all-gather, ...
and in a part (those of `bench-train --parts`) from its source stack (the HLO's stack-frame tables)
and op_name: `teacher_forward` (the Whisper encoder), `alignment_distill` (alignment, heads, cos +
MSE, forward and backward), `optimizer` (optax), `student_backward` (JAX's transpose of the rest),
`student_forward`.

The threads of XLA's pool can run independent ops at once, so the op times may sum to more than the
step's wall time; the table gives both.
"""

from __future__ import annotations

import glob
import re
import statistics
import tempfile
import time
from collections import defaultdict

_CONTAINERS = {"while", "call", "conditional", "parameter", "tuple", "get-tuple-element", "constant",
               "bitcast", "after-all", "opt-barrier"}
_MOVE = {"transpose", "copy", "slice", "dynamic-slice", "dynamic-update-slice", "pad", "concatenate", "reshape",
         "broadcast", "reverse", "gather", "scatter", "iota"}
_QUIET = {"parameter", "bitcast", "tuple", "get-tuple-element", "constant"}
_COLLECTIVES = {"all-reduce", "all-gather", "reduce-scatter", "all-to-all", "collective-permute",
                "all-reduce-start", "all-reduce-done", "all-gather-start", "all-gather-done"}
_OP_NAME = re.compile(r'op_name="([^"]*)"')
_FRAME = re.compile(r"\bstack_frame_id=(\d+)")
_TABLE_ROW = re.compile(r'^(\d+) (?:"(.*)"|\{(.*)\})\s*$')
_TEACHER = ("whisper.py", "WhisperEncoder", "teacher_targets")
_DISTILL = ("distill.py", "distill_predictions", "distill_loss", "regroup_and_align", "DistillHead")


def stack_frames(hlo_text: str) -> dict[int, tuple[str, ...]]:
    """{stack_frame_id: the file and function names of that frame and its parents} from the debug
    tables an optimised HLO module's text carries (FileNames, FunctionNames, FileLocations, StackFrames)."""
    tables, table = {}, None
    for line in hlo_text.splitlines():
        if line in ("FileNames", "FunctionNames", "FileLocations", "StackFrames"):
            table = tables.setdefault(line, {})
            continue
        m = _TABLE_ROW.match(line) if table is not None else None
        if not m:
            table = None if table is not None and line.strip() else table
            continue
        table[int(m.group(1))] = m.group(2) if m.group(2) is not None else dict(
            kv.split("=") for kv in m.group(3).split())
    files, funcs = tables.get("FileNames", {}), tables.get("FunctionNames", {})
    locs, frames = tables.get("FileLocations", {}), tables.get("StackFrames", {})
    out = {}
    for fid in frames:
        names, seen, f = [], set(), fid
        while f in frames and f not in seen:
            seen.add(f)
            loc = locs.get(int(frames[f].get("file_location_id", 0)), {})
            names += [files.get(int(loc.get("file_name_id", 0)), ""), funcs.get(int(loc.get("function_name_id", 0)), "")]
            f = int(frames[f].get("parent_frame_id", 0)) - 1  # the text prints the parent's id + 1 (0: none)
        out[fid] = tuple(names)
    return out


def part_of(op_name: str, frames: tuple[str, ...]) -> str:
    """The step's part an op belongs to, from its JAX op_name and source stack (the parts of
    `bench-train --parts`; the alignment and distillation heads' forward and backward together)."""
    text = " ".join(frames)
    if "optax" in text or "apply_updates" in text:
        return "optimizer"
    if any(w in text for w in _TEACHER):
        return "teacher_forward"
    if any(w in text for w in _DISTILL):
        return "alignment_distill"
    return "student_backward" if "transpose(" in op_name else "student_forward"
_CALLS = re.compile(r"\bcalls=%?([\w.\-]+)")


def op_kinds(hlo_text: str) -> dict[str, dict]:
    """{instruction name: {"kind", "part", "op"}} for every instruction of an optimised HLO module
    that runs as its own thunk (containers such as while/call and free ops such as bitcast left out)."""
    from aura_jax.tools.hlo_stats import _ARRAY, _DOT, _instructions

    instructions, _, _ = _instructions(hlo_text)
    shapes = {(comp, name): shape for comp, name, shape, _, _ in instructions}
    by_comp = defaultdict(list)
    for comp, name, shape, op, line in instructions:
        by_comp[comp].append((name, shape, op, line))

    def dot_kind(comp, name, shape, line):
        m = _DOT.search(line)
        (out, _), = _ARRAY.findall(shape)[:1]
        if not m:
            return f"dot ?→{out}"
        types = [(_ARRAY.findall(shapes.get((comp, x), "?[]")) or [("?", "")])[0][0] for x in m.groups()]
        return f"dot {types[0]}×{types[1]}→{out}"

    def kind_of(comp, name, shape, op, line, depth=0):
        if op == "dot":
            return dot_kind(comp, name, shape, line)
        if op == "convolution":
            return "convolution"
        if op in _COLLECTIVES:
            return "collective"
        if op == "convert":
            return "convert"
        if op in _MOVE:
            return "transpose/copy"
        if op in ("fusion", "custom-call", "call") and (callee := _CALLS.search(line)) and depth < 4:
            body = by_comp.get(callee.group(1), [])
            kinds = [kind_of(callee.group(1), *x, depth=depth + 1) for x in body if x[2] not in _QUIET]
            for k in kinds:
                if k.startswith("dot"):
                    return k
            if "convolution" in kinds:
                return "convolution"
            if kinds and all(k == "convert" for k in kinds):
                return "convert"
            if kinds and all(k in ("transpose/copy", "convert") for k in kinds):
                return "transpose/copy"
            return "elementwise/reduction"
        return "elementwise/reduction"

    frames = stack_frames(hlo_text)

    def source(line, depth=0):
        """(op_name, frames) of an instruction, else of the first instruction of its fused body that has one."""
        m, f = _OP_NAME.search(line), _FRAME.search(line)
        if (m or f) or depth >= 4 or not (callee := _CALLS.search(line)):
            return (m.group(1) if m else ""), frames.get(int(f.group(1)), ()) if f else ()
        for x in by_comp.get(callee.group(1), []):
            if x[2] not in _QUIET:
                got = source(x[3], depth + 1)
                if got[0] or got[1]:
                    return got
        return "", ()

    out = {}
    for comp, name, shape, op, line in instructions:
        if op in _CONTAINERS:
            continue
        out[name] = {"kind": kind_of(comp, name, shape, op, line), "part": part_of(*source(line)), "op": op}
    return out


def trace_op_times(run, hlo_text: str, *, steps: int) -> tuple[dict[str, float], list[float]]:
    """({op name: seconds per run}, [wall seconds of each run]) of `run()` called `steps` times under
    jax.profiler.trace, from the thunk events named like the HLO's instructions."""
    import jax
    from jax.profiler import ProfileData

    names = op_kinds(hlo_text)
    walls = []
    with tempfile.TemporaryDirectory() as d:
        with jax.profiler.trace(d):
            for _ in range(steps):
                start = time.perf_counter()
                run()
                walls.append(time.perf_counter() - start)
        files = glob.glob(f"{d}/**/*.xplane.pb", recursive=True)
        if not files:
            raise RuntimeError("jax.profiler wrote no xplane.pb")
        data = ProfileData.from_file(files[0])
        totals = defaultdict(float)
        for plane in data.planes:
            for line in plane.lines:
                for e in line.events:
                    if e.name in names:
                        totals[e.name] += e.duration_ns / 1e9
    return {k: v / steps for k, v in totals.items()}, walls


def summarize(op_seconds: dict[str, float], kinds: dict[str, dict], walls: list[float], *, top: int = 20) -> dict:
    by_kind, by_part, count = defaultdict(float), defaultdict(float), defaultdict(int)
    for name, s in op_seconds.items():
        k = kinds[name]
        by_kind[k["kind"]] += s
        by_part[k["part"]] += s
        count[k["kind"]] += 1
    ops = sorted(({"name": n, "seconds": s, **kinds[n]} for n, s in op_seconds.items()), key=lambda x: -x["seconds"])
    return {"top": ops[:top], "by_kind": dict(sorted(by_kind.items(), key=lambda kv: -kv[1])),
            "ops_by_kind": dict(count), "by_part": dict(sorted(by_part.items(), key=lambda kv: -kv[1])),
            "op_total_s": sum(op_seconds.values()), "ops": len(op_seconds),
            "wall_s": statistics.median(walls), "walls": walls}


def profile_step(config, *, steps: int = 3, warmup: int = 1, top: int = 20, hlo_path: str | None = None,
                 log=print) -> dict:
    import jax

    from aura_jax.bench.machine import load_average
    from aura_jax.bench.step import jax_setup

    load_before = load_average()
    trainer, _, batch, _ = jax_setup(config, log=log)
    step, frozen = trainer.compiled_step(batch), trainer.frozen
    state = {"s": trainer.state}

    def run():
        state["s"], metrics = step(state["s"], frozen, batch)
        jax.block_until_ready(metrics)

    for _ in range(warmup):
        run()
    hlo = step.as_text()
    if hlo_path:
        with open(hlo_path, "w") as f:
            f.write(hlo)
    op_seconds, walls = trace_op_times(run, hlo, steps=steps)
    out = summarize(op_seconds, op_kinds(hlo), walls, top=top)
    out.update(steps=steps, warmup=warmup, load_average={"before": load_before, "after": load_average()})
    return out


def format_profile(r: dict) -> str:
    wall, total = r["wall_s"], r["op_total_s"]
    lines = [f"step wall time (median of {r['steps']} traced steps after {r['warmup']} warm-up): {wall:.3f} s; "
             f"{r['ops']} ops, their times summed: {total:.3f} s (ops on different threads can overlap)", "",
             "| kind | ops | s / step | share of op time |", "|---|---|---|---|"]
    for k, s in r["by_kind"].items():
        lines.append(f"| {k} | {r['ops_by_kind'][k]} | {s:.4f} | {100 * s / total:.1f} % |")
    lines += ["", "| part | s / step | share |", "|---|---|---|"]
    for k, s in r["by_part"].items():
        lines.append(f"| {k} | {s:.4f} | {100 * s / total:.1f} % |")
    lines += ["", f"top {len(r['top'])} ops:", "", "| op | kind | part | s / step | share |", "|---|---|---|---|---|"]
    for x in r["top"]:
        lines.append(f"| {x['name']} | {x['kind']} | {x['part']} | {x['seconds']:.4f} | "
                     f"{100 * x['seconds'] / total:.1f} % |")
    lines += ["", f"load average before {r['load_average']['before']}, after {r['load_average']['after']}"]
    return "\n".join(lines)


def add_arguments(p) -> None:
    p.add_argument("config")
    p.add_argument("overrides", nargs="*", help="key=value config overrides")
    p.add_argument("--steps", type=int, default=3, help="traced steps (default 3)")
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--top", type=int, default=20)
    p.add_argument("--json", help="write the full result here")
    p.add_argument("--hlo", help="write the step's optimised HLO here (the op names of the table)")


def main(args) -> int:
    import json
    from pathlib import Path

    from aura_jax.config import load_config

    config = load_config(args.config, args.overrides)
    r = profile_step(config, steps=args.steps, warmup=args.warmup, top=args.top, hlo_path=args.hlo)
    print(format_profile(r))
    if args.json:
        Path(args.json).write_text(json.dumps(r, indent=2, default=float))
    return 0
