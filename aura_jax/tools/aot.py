"""`aura-jax aot CONFIG --target T [key=value ...]`: the training step compiled for hardware that is
not here (TPU slices, NVIDIA GPUs), from config.json alone.

The model is built abstract (`Trainer(config, abstract=True, devices=...)`: no weight is read,
every array a `jax.ShapeDtypeStruct` carrying its sharding from the config's `mesh` and
`sharding_rules`), then `Trainer.compiled_step` — the very method `aura-jax train` compiles
with — lowers and compiles the step for the target's compile-only devices, once per batch
shape the data pipeline produces (text bucket × audio bucket). Per device it reports XLA's
buffer assignment (does it fit, with what headroom), model FLOPs beside XLA's count, the
collectives of the optimised program, and an ESTIMATED step time, examples/s and MFU: on TPU
the cost model's `optimal_seconds` where it is sane, else a roofline (max of compute, HBM and
interconnect time); every estimate says which, and none is a measurement.

`--batch-sweep`: the largest global batch that fits, per remat policy, by compiling (doubling,
then bisection; a time cap; results cached on disk). `--inference`: AuRA's generation program
(audio prefill + prompt, KV-cache decoding) and the cascade's (Whisper encoder + decoder,
then the LLM) on one device of the target.

Keep this module's imports light: the plugins must be on sys.path before jax initialises.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import re
import time
from pathlib import Path

from aura_jax.tools import targets as tg

REMATS = ("none", "full", "dots_saveable", "dots_with_no_batch_dims_saveable")


def add_arguments(p) -> None:
    p.add_argument("config", help="YAML config, e.g. configs/aura_qwen2.5-7b_whisper-large-v3.yaml")
    p.add_argument("overrides", nargs="*", help="dotted key=value overrides (as for `aura-jax train`)")
    p.add_argument("--target", required=True,
                   help=f"{', '.join(tg.TARGETS)}, or a topology: v5e:4x8, tpu:v5p:2x2x2/2, h100:1x2x8")
    p.add_argument("--text-tokens", default=None, metavar="T1,T2,..",
                   help="text slots to compile for (default: every text bucket the data pipeline can produce, "
                        "data.text_bucket up to data.max_text_tokens)")
    p.add_argument("--batch-sweep", action="store_true",
                   help="find the largest global batch that fits, per --remat policy, by compiling")
    p.add_argument("--remat", default=None, metavar="P1,P2,..",
                   help=f"--batch-sweep: remat policies to sweep ({', '.join(REMATS)}; default: the config's)")
    p.add_argument("--max-batch", type=int, default=1024, help="--batch-sweep: largest batch tried (default 1024)")
    p.add_argument("--time-cap", type=float, default=3600.0,
                   help="--batch-sweep: stop compiling after this many seconds and report the bracket found")
    p.add_argument("--inference", action="store_true",
                   help="also compile AuRA's and the cascade's generation programs on one device of the target")
    p.add_argument("--inference-only", action="store_true", help="--inference without compiling the training step")
    p.add_argument("--prompt-tokens", type=int, default=64, help="--inference: text prompt slots (default 64)")
    p.add_argument("--max-new-tokens", type=int, default=64, help="--inference: answer tokens (default 64)")
    p.add_argument("--asr-tokens", type=int, default=128,
                   help="--inference: the cascade's Whisper transcript tokens (default 128)")
    p.add_argument("--usable-fraction", type=float, default=None,
                   help="a program fits when its bytes are at most this share of the chip's memory (default: "
                        "TPU 1.0, the compiler refusing what exceeds the chip; GPU 0.92, the XLA_PYTHON_CLIENT_MEM_FRACTION "
                        "the GPU launchers set; JAX's own default is 0.75)")
    p.add_argument("--cache", default="~/.cache/aura_jax/aot",
                   help="results of earlier compiles (same config, target, shapes, versions) are reused from "
                        "here; '' disables")
    p.add_argument("--json", default=None, help="write the report as JSON here")


# ---------------------------------------------------------------------------
# Batch shapes
# ---------------------------------------------------------------------------
def text_lengths(config) -> list[int]:
    """Every text width the pipeline can produce: the longest row of a batch (≤ max_text_tokens),
    padded up to a multiple of data.text_bucket."""
    d = config.data
    top = -(-d.max_text_tokens // d.text_bucket) * d.text_bucket
    return list(range(d.text_bucket, top + 1, d.text_bucket))


def batch_shapes(config, rows: int, text_len: int, frames: int) -> dict:
    from aura_jax.data.examples import batch_shapes as shapes

    a = config.audio
    return shapes(rows, text_len, frames, n_mels=a.n_mels, teacher_segments=a.teacher_segments,
                  teacher_frames=a.teacher_frames,
                  text_teacher_len=text_len if config.loss.text_teacher_weight > 0 else None)


# ---------------------------------------------------------------------------
# One compile, analysed
# ---------------------------------------------------------------------------
def analyse(compiled, target: tg.Target, n_devices: int, *, model_flops: float | None, rows: int | None,
            usable_fraction: float) -> dict:
    """Memory, costs, collectives and the labelled estimates of one compiled program."""
    from aura_jax.tools import hlo_stats

    chip = target.spec
    mem = hlo_stats.memory(compiled, chip.hbm_bytes, usable_fraction)
    costs = hlo_stats.xla_costs(compiled)
    colls = hlo_stats.collectives(compiled.as_text())
    return {"memory": mem, "xla": costs, "collectives": colls, "rows": rows,
            "model_flops_per_device": None if model_flops is None else model_flops / n_devices}


def with_estimate(report: dict, target: tg.Target) -> dict:
    """The report plus its labelled estimate, recomputed from the compiler's facts (so a cached
    compile gets today's estimate)."""
    from aura_jax.tools import hlo_stats

    if report["memory"] and report["memory"].get("refused_by_compiler"):
        est = {"is_estimate": True, "method": "none: the program does not fit", "step_s": None}
    else:
        est = estimate(target.spec, report["xla"], hlo_stats.interconnect_bytes(report["collectives"]),
                       report["model_flops_per_device"], report.get("rows"), target.platform)
    return dict(report, estimate=est)


_OOM = re.compile(r"memory required for (.+?) \(([\d.]+)([KMGT])\) exceeds available (?:HBM|memory) \(([\d.]+)([KMGT])\)")


def out_of_memory(error: Exception, target: tg.Target, n_devices: int, model_flops: float) -> dict:
    """The report of a program the compiler refused for lack of memory (TPU: RESOURCE_EXHAUSTED at
    compile time); anything else is re-raised."""
    text = str(error)
    if "RESOURCE_EXHAUSTED" not in text and "Ran out of memory" not in text:
        raise error
    scale = {"K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}
    m = _OOM.search(text)
    needed = available = None
    what = "memory"
    if m:
        what = m.group(1)
        needed = float(m.group(2)) * scale[m.group(3)]
        available = float(m.group(4)) * scale[m.group(5)]
    first = text.strip().splitlines()[0][:300]
    return {"memory": {"fits": False, "refused_by_compiler": first, "required": needed, "required_for": what,
                       "available": available, "capacity": target.spec.hbm_bytes, "total": needed},
            "xla": {"flops": None, "bytes_accessed": None, "optimal_seconds": None, "source": None},
            "collectives": {}, "model_flops_per_device": model_flops / n_devices}


def estimate(chip: tg.Chip, costs: dict, link_bytes: float, model_flops_per_device: float | None,
             rows: int | None, platform: str = "tpu") -> dict:
    """Step time (ESTIMATE): the TPU cost model's optimal_seconds where it is sane, else a roofline.

    Roofline terms per device: compute = FLOPs / dense bf16 peak (XLA's count, or the model's where that is
    larger: XLA's generic analysis of a GPU module does not see inside cuBLAS calls); HBM = XLA bytes accessed /
    bandwidth; interconnect = collective bytes / link bandwidth; the roofline is their maximum
    (perfect overlap: a lower bound on a real step). optimal_seconds is sane when it is finite,
    positive and within [0.5, 50] × that lower bound (it came out negative for a 7B-shaped step)."""
    peak = chip.peak_bf16_tflops * 1e12
    terms = {"compute_s": max(costs["flops"] or 0.0, model_flops_per_device or 0.0) / peak,
             "hbm_s": (costs["bytes_accessed"] or 0.0) / chip.hbm_bytes_per_s,
             "interconnect_s": link_bytes / chip.interconnect_bytes_per_s}
    roofline = max(terms.values())
    opt = costs.get("optimal_seconds") if platform == "tpu" else None  # GPUs have no timing cost model
    sane = opt is not None and math.isfinite(opt) and opt > 0 and 0.5 * roofline <= opt <= 50 * roofline
    seconds = opt if sane else roofline
    method = ("TPU cost model (optimal_seconds)" if sane else
              "roofline max(compute, HBM, interconnect): a lower bound on the step, so MFU is an upper bound"
              + ("" if opt is None else f"; cost model's optimal_seconds {opt:.4g} rejected"))
    out = {"is_estimate": True, "method": method, "step_s": seconds, "roofline_terms": terms,
           "cost_model_optimal_s": opt, "cost_model_sane": sane, "bound": None if sane else "roofline"}
    if seconds > 0 and rows:
        out["examples_per_s"] = rows / seconds
    if seconds > 0 and model_flops_per_device:
        out["mfu"] = model_flops_per_device / (seconds * peak)
    return out


# ---------------------------------------------------------------------------
# Training step
# ---------------------------------------------------------------------------
class TrainCompiler:
    """The abstract Trainer for one config on one target; compiles its step per batch shape."""

    def __init__(self, config, target: tg.Target, devices, *, usable_fraction: float = 0.9, log=print):
        from aura_jax.training.train import Trainer

        self.config, self.target, self.devices, self.log = config, target, devices, log
        self.usable_fraction = usable_fraction
        self.trainer = Trainer(config, abstract=True, devices=devices, log=log)

    def compile(self, text_len: int, frames: int) -> dict:
        from aura_jax.tools.flops import shapes_from_config, step_flops

        cfg = self.config
        shapes = batch_shapes(cfg, cfg.batch_size, text_len, frames)
        spec = self.trainer.batch_spec(shapes)
        self.trainer._compiled.clear()  # one program alive at a time (7B programs are large)
        flops = step_flops(shapes_from_config(cfg, {k: v[0] for k, v in shapes.items()}))
        start = time.perf_counter()
        try:
            compiled = self.trainer.compiled_step(spec)
        except Exception as e:  # the TPU compiler refuses a program that cannot fit
            report = out_of_memory(e, self.target, len(self.devices), flops["total"])
        else:
            report = analyse(compiled, self.target, len(self.devices), model_flops=flops["total"],
                             rows=cfg.batch_size, usable_fraction=self.usable_fraction)
        compile_s = time.perf_counter() - start
        if report["xla"]["flops"] is not None:
            report["xla_flops_per_step"] = report["xla"]["flops"] * len(self.devices)
        report.update(text_tokens=text_len, audio_frames=frames, audio_tokens=frames // cfg.audio.patch_frames,
                      batch=cfg.batch_size, grad_accum_steps=cfg.grad_accum_steps, compile_s=compile_s,
                      model_flops_per_step=flops["total"])
        self.trainer._compiled.clear()
        return report


def describe(config, target: tg.Target, devices) -> dict:
    from aura_jax.training import sharding as shd

    mesh = shd.mesh_shape(config.mesh, len(devices))
    return {"target": target.name, "platform": target.platform, "topology": target.topology,
            "num_slices": target.num_slices, "devices": len(devices), "device_kind": devices[0].device_kind,
            "chip": dataclasses.asdict(target.spec), "mesh": dict(zip(shd.MESH_AXES, mesh)),
            "llm": config.model.llm, "teacher": config.model.teacher, "dtype": config.model.compute_dtype,
            "param_dtype": config.model.param_dtype, "remat": config.model.remat,
            "attention": config.model.attention, "scan_layers": config.model.scan_layers,
            "lora": {"layers": config.lora.num_layers, "rank": config.lora.rank},
            "batch": config.batch_size, "grad_accum_steps": config.grad_accum_steps}


def train_report(config, target: tg.Target, devices, text_len: int, frames: int, *, usable_fraction: float = 0.9,
                 cache=None, compiler=None, log=print) -> dict:
    """The analysed step for one batch shape, from the cache or compiled (`compiler`: a TrainCompiler of
    this config to reuse); the estimate is always recomputed."""
    key = cache_key(config, target, {"kind": "train", "text": text_len, "frames": frames})
    hit = cache.get(key) if cache else None
    if hit is None:
        compiler = compiler or TrainCompiler(config, target, devices, usable_fraction=usable_fraction, log=log)
        hit = compiler.compile(text_len, frames)
        if cache:
            cache.put(key, hit)
    else:
        hit = dict(hit, cached=True)
    return with_estimate(judge_fit(hit, usable_fraction), target)


def judge_fit(report: dict, usable_fraction: float) -> dict:
    """Fit and headroom against this run's usable share of the chip (recomputed: cached compiles too)."""
    m = report["memory"]
    if not m or m.get("refused_by_compiler") or m.get("capacity") is None:
        return report
    usable = usable_fraction * m["capacity"]
    return dict(report, memory=dict(m, usable_fraction=usable_fraction, headroom=int(usable - m["total"]),
                                    fits=m["total"] <= usable))


def compile_train(config, target: tg.Target, devices, *, text_lens=None, usable_fraction=0.9, cache=None,
                  log=print) -> list[dict]:
    """One report per batch shape (text × audio bucket); cached results are reused."""
    text_lens = text_lens or text_lengths(config)
    compiler = None
    reports = []
    for frames in sorted(config.data.audio_buckets):
        for t in text_lens:
            if compiler is None and cache is None:
                compiler = TrainCompiler(config, target, devices, usable_fraction=usable_fraction, log=log)
            r = train_report(config, target, devices, t, frames, usable_fraction=usable_fraction, cache=cache,
                             compiler=compiler, log=log)
            log(one_line(r))
            reports.append(r)
    return reports


# ---------------------------------------------------------------------------
# Batch sweep
# ---------------------------------------------------------------------------
def batch_sweep(config, target: tg.Target, devices, *, remats, text_len: int, frames: int, max_batch: int,
                time_cap: float, usable_fraction: float = 0.9, cache=None, log=print) -> dict:
    """Per remat policy, the largest global batch (a multiple of the data-parallel size × the
    accumulation steps) whose step fits: double from config.batch_size until it does not fit (or
    max_batch), halve if the start does not fit, then bisect. Stops at `time_cap` seconds of
    compiling, reporting the bracket found so far."""
    from aura_jax.training import sharding as shd

    mesh = shd.make_mesh(config.mesh, devices)
    unit = shd.data_parallel_size(mesh, config.sharding_rules) * config.grad_accum_steps
    unit = math.lcm(unit, config.grad_accum_steps)
    started = time.perf_counter()
    results = {}
    for remat in remats:
        cfg = dataclasses.replace(config, model=dataclasses.replace(config.model, remat=remat))
        trials: dict[int, dict] = {}

        def fits(b: int) -> bool | None:
            if b in trials:
                return trials[b]["fits"]
            cfg_b = dataclasses.replace(cfg, batch_size=b)
            key = cache_key(cfg_b, target, {"kind": "train", "text": text_len, "frames": frames})
            if not (cache and cache.get(key)) and time.perf_counter() - started > time_cap:
                return None
            hit = train_report(cfg_b, target, devices, text_len, frames, usable_fraction=usable_fraction,
                               cache=cache, log=lambda *a, **k: None)
            m = hit["memory"]
            trials[b] = {"fits": bool(m["fits"]), "total_bytes": m["total"], "compile_s": hit["compile_s"],
                         "cached": bool(hit.get("cached")), "estimate_step_s": hit["estimate"]["step_s"],
                         "refused_by_compiler": m.get("refused_by_compiler")}
            log(f"  remat={remat} batch {b}: {gib(m['total'])} GiB per device -> "
                f"{'fits' if m['fits'] else 'does not fit'}" + (" (cached)" if hit.get("cached") else ""))
            return trials[b]["fits"]

        lo, hi, capped = None, None, False  # lo fits, hi does not
        b = max(unit, config.batch_size // unit * unit)
        ok = fits(b)
        if ok is None:
            capped = True
        elif ok:
            lo = b
            while lo * 2 <= max_batch:
                r = fits(lo * 2)
                if r is None:
                    capped = True
                    break
                if not r:
                    hi = lo * 2
                    break
                lo *= 2
        else:
            hi = b
            while hi // 2 >= unit and hi // 2 % unit == 0:
                r = fits(hi // 2)
                if r is None:
                    capped = True
                    break
                if r:
                    lo = hi // 2
                    break
                hi //= 2
        while not capped and lo is not None and hi is not None and hi - lo > unit:
            mid = (lo + hi) // 2 // unit * unit
            if mid in (lo, hi):
                break
            r = fits(mid)
            if r is None:
                capped = True
            elif r:
                lo = mid
            else:
                hi = mid
        results[remat] = {"largest_fitting_batch": lo, "smallest_failing_batch": hi, "time_capped": capped,
                          "unit": unit, "trials": {str(k): v for k, v in sorted(trials.items())}}
        log(f"remat={remat}: largest batch that fits {lo} (smallest that does not: {hi})"
            + (" [time cap reached]" if capped else ""))
    return {"text_tokens": text_len, "audio_frames": frames, "max_batch": max_batch, "results": results,
            "sweep_s": time.perf_counter() - started}


# ---------------------------------------------------------------------------
# Inference programs
# ---------------------------------------------------------------------------
def compile_inference(config, target: tg.Target, device, *, prompt_tokens: int, max_new_tokens: int,
                      asr_tokens: int, usable_fraction: float = 0.9, log=print) -> dict:
    from aura_jax.tools import aot_inference

    return aot_inference.compile_all(config, target, device, prompt_tokens=prompt_tokens,
                                     max_new_tokens=max_new_tokens, asr_tokens=asr_tokens,
                                     usable_fraction=usable_fraction, log=log)


# ---------------------------------------------------------------------------
# Result cache
# ---------------------------------------------------------------------------
class ResultCache:
    """JSON files keyed by a hash of everything that shapes the program (config, the checkpoints'
    config.json, target, shapes, jax/plugin versions): a repeated sweep compiles nothing twice."""

    def __init__(self, folder: str):
        self.folder = Path(folder).expanduser()
        self.folder.mkdir(parents=True, exist_ok=True)

    def get(self, key: str) -> dict | None:
        path = self.folder / f"{key}.json"
        try:
            return json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            return None

    def put(self, key: str, value: dict) -> None:
        tmp = self.folder / f".{key}.tmp"
        tmp.write_text(json.dumps(value, default=float))
        tmp.replace(self.folder / f"{key}.json")


def code_fingerprint() -> str:
    """A hash of the package's source: a cached result never outlives the code that compiled it."""
    root = Path(__file__).resolve().parents[1]
    h = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        if path.name == "aot.py":  # its estimates are recomputed from cached facts; the rest shapes them
            continue
        h.update(str(path.relative_to(root)).encode())
        h.update(path.read_bytes())
    return h.hexdigest()[:16]


def cache_key(config, target: tg.Target, extra: dict) -> str:
    import importlib.metadata as md

    import jax

    from aura_jax.hf import read_config

    cfg = config.to_dict()
    for k in ("run_dir", "data", "distributed", "compilation_cache_dir", "checkpoint_every", "keep_checkpoints",
              "log_every", "steps", "epochs"):
        cfg.pop(k, None)
    cfg["data_shapes"] = {k: getattr(config.data, k) for k in ("text_bucket", "max_text_tokens", "audio_buckets")}
    versions = {"jax": jax.__version__}
    for dist in ("libtpu", "jax-cuda12-plugin"):
        try:
            versions[dist] = md.version(dist)
        except md.PackageNotFoundError:
            pass
    models = {k: read_config(p) if p else None for k, p in (("llm", config.model.llm), ("teacher", config.model.teacher))}
    blob = json.dumps({"config": cfg, "models": models, "target": dataclasses.asdict(target), "extra": extra,
                       "versions": versions, "code": code_fingerprint(), "schema": 1}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:24]


# ---------------------------------------------------------------------------
# Output
# ---------------------------------------------------------------------------
def gib(b) -> str:
    return "n/a" if b is None else f"{b / 2**30:.2f}"


def _g(x, fmt=".3g") -> str:
    return "n/a" if x is None else format(x, fmt)


def one_line(r: dict) -> str:
    m, e = r["memory"], r["estimate"]
    fit = "n/a" if m is None else ("FITS" if m["fits"] else "DOES NOT FIT")
    if m and m.get("refused_by_compiler"):
        fit += f" (compiler: {gib(m['required'])} GiB needed for {m['required_for']})"
    accum = f" ({r['grad_accum_steps']} micro-batches)" if r["grad_accum_steps"] > 1 else ""
    done = " (cached)" if r.get("cached") else f"; compiled in {r['compile_s']:.0f} s"
    return (f"text {r['text_tokens']} + audio {r['audio_tokens']} tokens, batch {r['batch']}{accum}: "
            f"{gib(m and m['total'])} GiB per device, {fit}; estimated step {_g(e['step_s'])} s "
            f"[{e['method'].split(';')[0]}]{done}")


def _collectives_cell(colls: dict) -> str:
    return ", ".join(f"{k} {v['count']}x {v['bytes'] / 2**30:.2f} GiB" for k, v in sorted(colls.items())) or "none"


def _pct(x, bound=None) -> str:
    return "n/a" if x is None else ("≤ " if bound else "") + f"{100 * x:.1f}%"


def train_table(rows: list[dict]) -> list[str]:
    header = ["text", "audio", "args GiB", "out GiB", "temp GiB", "alias GiB", "total GiB", "of chip", "fits",
              "headroom GiB", "model TFLOP/dev", "XLA TFLOP/dev", "collectives (per step)", "step s [est.]",
              "examples/s [est.]", "MFU [est.]", "estimate method", "compile s"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in rows:
        m, e, x = r["memory"] or {}, r["estimate"], r["xla"]
        xla = "n/a" if x["flops"] is None else f"{x['flops'] / 1e12:.2f}"
        if x.get("source") == "hlo_module_cost_analysis":
            xla += " (cuBLAS/cuDNN calls not counted)"
        share = f"{100 * m['total'] / m['capacity']:.0f}%" if m and m.get("total") else "n/a"
        if m.get("refused_by_compiler"):
            share += f" (refused: {gib(m['required'])} GiB for {m['required_for']})"
        cells = [r["text_tokens"], r["audio_tokens"], gib(m.get("argument")), gib(m.get("output")), gib(m.get("temp")),
                 gib(m.get("alias")), gib(m.get("total")), share, "yes" if m.get("fits") else "NO",
                 gib(m.get("headroom")), f"{r['model_flops_per_device'] / 1e12:.2f}", xla,
                 _collectives_cell(r["collectives"]), _g(e["step_s"]), _g(e.get("examples_per_s")),
                 _pct(e.get("mfu"), e.get("bound")), e["method"].split(":")[0], "cached" if r.get("cached") else f"{r['compile_s']:.0f}"]
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    return lines


def header_lines(d: dict) -> list[str]:
    slices = f", {d['num_slices']} slices" if d["num_slices"] > 1 else ""
    accum = f" in {d['grad_accum_steps']} micro-batches" if d["grad_accum_steps"] > 1 else ""
    return [f"target {d['target']}: {d['devices']} x {d['device_kind']} ({d['platform']}, topology {d['topology']}"
            f"{slices}), mesh {d['mesh']}, {d['chip']['hbm_bytes'] / 2**30:.1f} GiB per device",
            f"model {d['llm']} + teacher {d['teacher']}: {d['param_dtype']} weights, {d['dtype']} compute, "
            f"LoRA K={d['lora']['layers']} r={d['lora']['rank']}, remat {d['remat']}, attention {d['attention']}, "
            f"scan_layers {d['scan_layers']}, batch {d['batch']}{accum}",
            "[est.] marks an ESTIMATE; nothing here ran on the target. Memory is XLA's buffer assignment for it."]


def format_report(report: dict) -> str:
    lines = header_lines(report["target"])
    if report.get("train"):
        lines += [""] + train_table(report["train"])
    if "sweep" in report:
        s = report["sweep"]
        lines += ["", f"batch sweep at {s['text_tokens']} text slots + {s['audio_frames']} audio frames "
                      f"(largest tried {s['max_batch']}, {s['sweep_s']:.0f} s of compiling):"]
        for remat, v in s["results"].items():
            capped = " (time cap reached)" if v["time_capped"] else ""
            lines.append(f"  remat {remat}: largest batch that fits {v['largest_fitting_batch']}, smallest that "
                         f"does not {v['smallest_failing_batch']}{capped}")
    if "inference" in report:
        from aura_jax.tools.aot_inference import format_inference

        lines += ["", format_inference(report["inference"])]
    return "\n".join(lines)


def main(args) -> int:
    target = tg.resolve_target(args.target)
    tg.enable_plugin(target.platform)  # before anything initialises jax's backends
    from aura_jax.config import ConfigError, load_config

    config = load_config(args.config, args.overrides)
    devices = tg.target_devices(target)
    if args.usable_fraction is None:
        args.usable_fraction = tg.default_usable_fraction(target)
    text_lens = [int(x) for x in args.text_tokens.split(",") if x] if args.text_tokens else None
    cache = ResultCache(args.cache) if args.cache else None
    report = {"target": describe(config, target, devices), "command": " ".join(
        ["aura-jax aot", args.config, *args.overrides, "--target", args.target])}
    print("\n".join(header_lines(report["target"])))
    if args.batch_sweep:
        remats = args.remat.split(",") if args.remat else [config.model.remat]
        bad = [r for r in remats if r not in REMATS]
        if bad:
            raise ConfigError(f"--remat {bad[0]!r}: use {', '.join(REMATS)}")
        t = (text_lens or [config.data.text_bucket])[0]
        report["sweep"] = batch_sweep(config, target, devices, remats=remats, text_len=t,
                                      frames=max(config.data.audio_buckets), max_batch=args.max_batch,
                                      time_cap=args.time_cap, usable_fraction=args.usable_fraction, cache=cache)
    elif not args.inference_only:
        report["train"] = compile_train(config, target, devices, text_lens=text_lens,
                                        usable_fraction=args.usable_fraction, cache=cache)
    if args.inference or args.inference_only:
        report["inference"] = compile_inference(config, target, devices[0], prompt_tokens=args.prompt_tokens,
                                                max_new_tokens=args.max_new_tokens, asr_tokens=args.asr_tokens,
                                                usable_fraction=args.usable_fraction)
    print(format_report(report))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(report, indent=2, default=float))
    return 0
