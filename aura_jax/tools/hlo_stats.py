"""What a compiled program says about itself: memory, XLA's costs, and its collectives.

Read from `jax.stages.Compiled` objects and their optimised HLO text, on any backend (CPU, or the
compile-only TPU and GPU devices of `aura_jax.tools.targets`).
"""

from __future__ import annotations

import math
import re

_DTYPE_BYTES = {"pred": 1, "s8": 1, "u8": 1, "s16": 2, "u16": 2, "f16": 2, "bf16": 2, "s32": 4, "u32": 4,
                "f32": 4, "s64": 8, "u64": 8, "f64": 8, "c64": 8, "c128": 16, "f8e4m3fn": 1, "f8e5m2": 1,
                "s4": 0.5, "u4": 0.5}
COLLECTIVES = ("all-gather", "all-reduce", "reduce-scatter", "all-to-all", "collective-permute",
               "collective-broadcast", "ragged-all-to-all")
_ARRAY = re.compile(r"\b([a-z]+[0-9]*[a-z0-9]*)\[([0-9,]*)\]")
_INSTR = re.compile(r"^\s*(?:ROOT\s+)?%?([\w.\-]+)\s*=\s*(.+?)\s+([a-z][a-z0-9\-]*)\(")
_HEADER = re.compile(r"^(?:ENTRY\s+)?%?([\w.\-]+)\s.*\{\s*$")
_TRIP = re.compile(r'"known_trip_count":\{"n":"(\d+)"\}')


def memory(compiled, capacity_bytes: int | None = None, usable_fraction: float = 0.9) -> dict | None:
    """Per-device bytes from XLA's buffer assignment: arguments, outputs, temporaries, aliased
    (donated inputs reused as outputs, counted in both), generated code, and the total live at
    once = arguments + outputs − aliased + temporaries + code. With a capacity: headroom and fit
    (total ≤ usable_fraction × capacity; the rest is the runtime's and fragmentation's)."""
    try:
        m = compiled.memory_analysis()
    except Exception:  # not every backend reports it
        return None
    if m is None:
        return None
    out = {k: int(getattr(m, f"{k}_size_in_bytes")) for k in ("argument", "output", "temp", "alias")}
    out["code"] = int(getattr(m, "generated_code_size_in_bytes", 0) or 0)
    out["total"] = out["argument"] + out["output"] - out["alias"] + out["temp"] + out["code"]
    if capacity_bytes:
        out.update(capacity=int(capacity_bytes), usable_fraction=usable_fraction,
                   headroom=int(usable_fraction * capacity_bytes) - out["total"],
                   fits=out["total"] <= usable_fraction * capacity_bytes)
    return out


def xla_costs(compiled) -> dict:
    """XLA's own cost analysis of the per-device program: flops, bytes accessed and, on TPU, the cost
    model's `optimal_seconds`. Compile-only GPU executables have none; for them XLA's generic HLO
    cost analysis runs on the GPU-optimised module (a private jaxlib API: None if it moves)."""
    cost = None
    try:
        cost = compiled.cost_analysis()
    except Exception:
        cost = None
    if isinstance(cost, (list, tuple)):
        cost = cost[0] if cost else None
    source = "cost_analysis"
    if not cost:
        cost, source = _generic_hlo_cost(compiled), "hlo_module_cost_analysis"
    if not cost:
        return {"flops": None, "bytes_accessed": None, "optimal_seconds": None, "source": None}
    opt = cost.get("optimal_seconds")
    return {"flops": _num(cost.get("flops")), "bytes_accessed": _num(cost.get("bytes accessed")),
            "optimal_seconds": _num(opt), "source": source}


def _num(x):
    return None if x is None else float(x)


def _generic_hlo_cost(compiled) -> dict | None:
    try:
        import jax
        from jax._src.lib import _jax

        module = compiled.runtime_executable().hlo_modules()[0]
        return dict(_jax.hlo_module_cost_analysis(jax.devices("cpu")[0].client, module))
    except Exception:
        return None


def shape_bytes(shape_text: str) -> list[float]:
    """Bytes of every array in an HLO shape ("bf16[8,128]{1,0}" or a tuple of them)."""
    out = []
    for dtype, dims in _ARRAY.findall(shape_text):
        if dtype in _DTYPE_BYTES:
            out.append(_DTYPE_BYTES[dtype] * math.prod(int(d) for d in dims.split(",") if d))
    return out


_CALLEE = re.compile(r"\b(calls|to_apply|body|condition|true_computation|false_computation)=%?([\w.\-]+)")
_CALLEES = re.compile(r"\b(?:called_computations|branch_computations)=\{([^}]*)\}")
_CHANNEL = re.compile(r"\bchannel_id=(\d+)")


def collectives(hlo_text: str) -> dict[str, dict]:
    """Collectives of an optimised HLO module: {kind: {"count", "bytes", "static_count"}} per device
    and call of the program.

    One logical collective counts once: the TPU compiler clones a collective into several fusions
    under the same channel_id (deduplicated by it), and an async pair counts at its -start (the
    -done is skipped). Bytes are the result's: for an all-gather the gathered array, for an
    all-reduce the reduced one, for a combined collective the sum of its arrays; an async start's
    tuple also holds its operand, so it counts its largest array (all-gather, collective-permute)
    or its second half (the others). A collective inside a while loop with a known trip count
    (gradient accumulation's scan, a decode loop) counts once per iteration; `static_count` is
    how many distinct collectives of the kind the program text holds."""
    found: dict[str, tuple[str, float, str]] = {}  # channel (or name) -> (kind, bytes, computation)
    instructions, calls, entry = _instructions(hlo_text)
    for comp, name, shape, op, line in instructions:
        if op.endswith("-done"):
            continue
        kind = op[:-6] if op.endswith("-start") else op
        if kind not in COLLECTIVES:
            continue
        sizes = shape_bytes(shape)
        if not sizes:
            continue
        if op.endswith("-start") and shape.strip().startswith("("):
            if kind in ("all-gather", "collective-permute"):
                nbytes = max(sizes)
            else:
                nbytes = sum(sizes[len(sizes) // 2:]) if len(sizes) > 1 else sizes[0]
        else:
            nbytes = sum(sizes)
        channel = _CHANNEL.search(line)
        found.setdefault(channel.group(1) if channel else f"{comp}/{name}", (kind, nbytes, comp))
    runs = _executions(calls, entry)
    out: dict[str, dict] = {}
    for kind, nbytes, comp in found.values():
        k = out.setdefault(kind, {"count": 0, "static_count": 0, "bytes": 0.0})
        n = runs.get(comp, 1)
        k["count"] += n
        k["static_count"] += 1
        k["bytes"] += n * nbytes
    return out


_DOT = re.compile(r"\bdot\(%?([\w.\-]+),\s*%?([\w.\-]+)\)")
_DIMS = re.compile(r"\b(lhs_batch_dims|rhs_batch_dims|lhs_contracting_dims|rhs_contracting_dims)=\{([\d,]*)\}")


def dots(hlo_text: str) -> list[dict]:
    """Every dot of an optimised HLO module, fused or not, with how often it runs per call of the
    program (a while body's trip count, as for `collectives`): [{"dtype" (the result's), "lhs_dtype",
    "rhs_dtype" (the operands' element types), "lhs", "rhs" (shapes),
    "lhs_contracting", "rhs_contracting", "lhs_batch", "rhs_batch" (dims), "count", "flops" (per
    run: 2 × output elements × contracted size)}]."""
    instructions, calls, entry = _instructions(hlo_text)
    shapes = {(comp, name): shape for comp, name, shape, _, _ in instructions}
    found = [(comp, line, shape, operands.groups()) for comp, _, shape, op, line in instructions
             if op == "dot" and (operands := _DOT.search(line))]
    runs = _executions(calls, entry)
    out = []
    for comp, line, shape, (lhs, rhs) in found:
        dims = {k: tuple(int(d) for d in v.split(",") if d) for k, v in _DIMS.findall(line)}
        (dtype, out_dims), = _ARRAY.findall(shape)[:1]
        lhs_shape = _dims(shapes[(comp, lhs)])
        contracted = math.prod(lhs_shape[d] for d in dims.get("lhs_contracting_dims", ()))
        (lhs_dtype, _), = _ARRAY.findall(shapes[(comp, lhs)])[:1]
        (rhs_dtype, _), = _ARRAY.findall(shapes[(comp, rhs)])[:1]
        out.append({"dtype": dtype, "lhs_dtype": lhs_dtype, "rhs_dtype": rhs_dtype,
                    "lhs": lhs_shape, "rhs": _dims(shapes[(comp, rhs)]),
                    "lhs_contracting": dims.get("lhs_contracting_dims", ()),
                    "rhs_contracting": dims.get("rhs_contracting_dims", ()),
                    "lhs_batch": dims.get("lhs_batch_dims", ()), "rhs_batch": dims.get("rhs_batch_dims", ()),
                    "count": runs.get(comp, 1),
                    "flops": 2.0 * math.prod(int(d) for d in out_dims.split(",") if d) * contracted})
    return out


def _dims(shape_text: str) -> tuple[int, ...]:
    (_, dims), = _ARRAY.findall(shape_text)[:1]
    return tuple(int(d) for d in dims.split(",") if d)


def _instructions(hlo_text: str):
    """([(computation, name, shape, op, line)] of every instruction, the call graph {caller:
    [(callee, times per call)]} with a while body weighted by its known trip count, the entry)."""
    instructions, calls, comp, entry = [], {}, None, None
    for line in hlo_text.splitlines():
        # A computation's header starts its line (its parameter list may hold "/*index=5*/");
        # its instructions are indented.
        h = _HEADER.match(line)
        if h and not line[:1].isspace():
            comp = h.group(1)
            if line.startswith("ENTRY"):
                entry = comp
            continue
        m = _INSTR.match(line)
        if not m or comp is None:
            continue
        name, shape, op = m.groups()
        instructions.append((comp, name, shape, op, line))
        trip = _TRIP.search(line)
        for role, callee in _CALLEE.findall(line):
            calls.setdefault(comp, []).append((callee, int(trip.group(1)) if role == "body" and trip else 1))
        for group in _CALLEES.findall(line):
            calls.setdefault(comp, []).extend((c.strip().lstrip("%"), 1) for c in group.split(",") if c.strip())
    return instructions, calls, entry


def _executions(calls: dict[str, list[tuple[str, int]]], entry: str | None) -> dict[str, int]:
    """How many times each computation runs per call of the entry: the call graph from the entry,
    a while body weighted by its known trip count (the largest count where several paths lead)."""
    runs = {entry: 1} if entry else {}
    stack = [entry] if entry else []
    while stack:
        comp = stack.pop()
        for callee, factor in calls.get(comp, []):
            n = runs[comp] * factor
            if n > runs.get(callee, 0):
                runs[callee] = n
                stack.append(callee)
    return runs


def interconnect_bytes(colls: dict[str, dict]) -> float:
    """Bytes each device moves over the interconnect, ring algorithms: an all-reduce moves its array
    about twice (reduce-scatter + all-gather), the others about once."""
    return sum(v["bytes"] * (2.0 if k == "all-reduce" else 1.0) for k, v in colls.items())


_METADATA = re.compile(r",? metadata=\{[^}]*\}")
_DEBUG_TABLES = ("FileNames", "FunctionNames", "FileLocations", "StackFrames")


def program_text(compiled) -> str:
    """The optimised HLO without source locations (op metadata and the stack-frame tables, which
    name the Python lines that called into jax): equal texts mean the same compiled program."""
    lines, skipping = [], False
    for line in compiled.as_text().splitlines():
        if line.strip() in _DEBUG_TABLES:
            skipping = True
        elif skipping and not line.strip():
            skipping = False
            continue
        if not skipping:
            lines.append(_METADATA.sub("", line))
    return "\n".join(lines)
