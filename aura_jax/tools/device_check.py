"""The prepared accelerator check (`scripts/device_check.sh`): one run on a lent GPU measures
the paper-scale figures that only such a machine gives, inside a fixed wall-time budget.

Stages, each in its own subprocess with its own time box, each appending its result to
OUT/results.jsonl the moment it ends (a killed run keeps what finished):

  env        versions, devices
  models     random Qwen2.5-7B-Instruct and Whisper-large-v3 at real shapes, bf16, local disk
  train_step bench-train on the paper configuration (300 audio tokens + 64 text slots, K=4,
             r=256): batch 8, 16, 32 (stopping at out-of-memory), attention xla / dot_product,
             remat none / dots_saveable; step time, MFU, the device's measured peak memory beside
             XLA's memory analysis of the same compiled program
  run        a short training run on the random 7B, then a PEFT export of it
  infer      bench-infer: AuRA (the export) against the cascade in bf16, 20 clips of 5/10/30 s
  variants   bench-infer --against: the run's adapters as an audio-only (`--format adapter`) export,
             LoRA unmerged, against the same adapters merged, interleaved: prefill, time to the first
             token, decode time per token, peak memory, batch 1 and 8
  jax_gen    JAX generation (generate_aura) throughput at batch 16
  summary    OUT/summary.json and OUT/summary.md

`--small` runs the same stages at tiny shapes on the CPU in about a minute (CI runs it), so the
script is known to work before it meets a GPU.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PAPER_CONFIG = REPO / "configs" / "aura_qwen2.5-7b_whisper-large-v3.yaml"
TINY_CONFIG = REPO / "configs" / "tiny.yaml"


@dataclasses.dataclass
class Plan:
    """What each stage does and how long it may take (seconds)."""

    llm_preset: str
    teacher_preset: str
    config: Path
    batches: tuple[int, ...]
    steps: int
    warmup: int
    text_tokens: int
    device: str  # torch device for bench-infer
    dtype: str  # torch dtype for bench-infer
    clip_seconds: tuple[float, ...]
    clips: int
    new_tokens: int
    gen_batch: int
    run_overrides: tuple[str, ...]
    variant_batches: tuple[int, ...]  # the variants stage: adapter export vs merged, at these batch sizes
    variant_rounds: int
    budget: dict
    # (attention, remat) tried at the largest batch that fitted the plain step
    options: tuple = (("dot_product", "none"), ("xla", "dots_saveable"), ("dot_product", "dots_saveable"))


FULL = Plan(llm_preset="qwen2.5-7b-instruct", teacher_preset="whisper-large-v3", config=PAPER_CONFIG,
            batches=(8, 16, 32), steps=3, warmup=1, text_tokens=64, device="cuda", dtype="bfloat16",
            clip_seconds=(5.0, 10.0, 30.0), clips=20, new_tokens=32, gen_batch=16, variant_batches=(1, 8),
            variant_rounds=3,
            # the bench's batch-8 shapes: the run's step comes from the compilation cache
            run_overrides=("steps=2", "batch_size=8", "checkpoint_every=2", "data.text_bucket=64",
                           "data.max_text_tokens=64"),
            # wall-time boxes (s), 550 in all
            budget={"env": 20, "models": 80, "train_step": 120, "run": 120, "infer": 100, "jax_gen": 50,
                    "variants": 60})
SMALL = Plan(llm_preset="tiny", teacher_preset="tiny-whisper", config=TINY_CONFIG,
             batches=(2,), options=(("dot_product", "dots_saveable"),), steps=1, warmup=0, text_tokens=32, device="cpu", dtype="float32",
             clip_seconds=(1.0, 2.0, 3.0), clips=3, new_tokens=4, gen_batch=16, variant_batches=(1, 8),
             variant_rounds=3,
             run_overrides=("steps=2", "batch_size=2", "checkpoint_every=2", "data.text_bucket=128",
                            "audio.num_frames=3000"),
             budget={"env": 30, "models": 60, "train_step": 120, "run": 90, "infer": 90, "jax_gen": 60,
                     "variants": 90})


ENV_PROBE = """
import json
info = {}
try:
    import jax
    info.update(jax=jax.__version__, backend=jax.default_backend(), devices=[d.device_kind for d in jax.devices()])
except Exception as e:
    info["jax_error"] = repr(e)
for name in ("flax", "optax", "orbax.checkpoint", "grain", "torch", "transformers", "peft"):
    try:
        info[name] = getattr(__import__(name, fromlist=["__version__"]), "__version__", "?")
    except Exception as e:
        info[name] = "missing (%s)" % type(e).__name__
print(json.dumps(info))
"""


class Check:
    def __init__(self, out: Path, work: Path, plan: Plan, python: str):
        self.out, self.work, self.plan, self.python = out, work, plan, python
        self.out.mkdir(parents=True, exist_ok=True)
        self.work.mkdir(parents=True, exist_ok=True)
        self.results_path = out / "results.jsonl"
        self.log_path = out / "log.txt"
        self.start = time.time()
        self.results: list[dict] = []

    # -- plumbing ---------------------------------------------------------------
    def log(self, text: str) -> None:
        line = f"[{time.time() - self.start:6.1f} s] {text}"
        print(line, flush=True)
        with open(self.log_path, "a") as f:
            f.write(line + "\n")

    def record(self, stage: str, **result) -> dict:
        entry = {"stage": stage, "t_s": round(time.time() - self.start, 1), **result}
        self.results.append(entry)
        with open(self.results_path, "a") as f:
            f.write(json.dumps(entry, default=str) + "\n")
        return entry

    def cli(self, args: list[str], timeout: float) -> tuple[int, str, float]:
        """`python -m aura_jax.cli ARGS` with a time box; (return code (124: timed out), output tail, s)."""
        self.log("$ aura-jax " + " ".join(args))
        return self._python(["-m", "aura_jax.cli", *args], timeout)

    # -- stages -------------------------------------------------------------------
    def env(self) -> None:
        """Versions and devices, read in a subprocess: the orchestrator never initialises a GPU backend
        (jax would preallocate most of the GPU's memory, and every later stage would run out of it)."""
        code, output, _ = self._python(["-c", ENV_PROBE], self.remaining("env"))
        try:
            info = json.loads(output.strip().splitlines()[-1])
        except (ValueError, IndexError):
            info = {"error": output[-800:]}
        info.update(python=platform.python_version(), machine=platform.node())
        try:
            smi = subprocess.run(["nvidia-smi", "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader"],
                                 capture_output=True, text=True, timeout=20)
            info["nvidia_smi"] = smi.stdout.strip()
        except (OSError, subprocess.TimeoutExpired):
            info["nvidia_smi"] = None
        self.record("env", ok=code == 0, **info)

    def models(self) -> bool:
        ok = True
        for preset, name in ((self.plan.llm_preset, "llm"), (self.plan.teacher_preset, "teacher")):
            target = self.work / "models" / name
            if (target / "config.json").exists():
                self.record("models", ok=True, preset=preset, path=str(target), seconds=0.0, cached=True)
                continue
            code, tail, seconds = self.cli(["make-random", "--preset", preset, "--out", str(target), "--fast",
                                            "--dtype", "bfloat16" if self.plan.device != "cpu" else "float32"],
                                           self.remaining("models"))
            self.record("models", ok=code == 0, preset=preset, path=str(target), seconds=round(seconds, 1),
                        **({} if code == 0 else {"error": tail[-800:]}))
            ok = ok and code == 0
        return ok

    def model_overrides(self) -> list[str]:
        return [f"model.llm={self.work / 'models' / 'llm'}", f"model.teacher={self.work / 'models' / 'teacher'}",
                "model.random_init=", f"compilation_cache_dir={self.work / 'xla_cache'}"]

    def train_step(self) -> None:
        """Batch sizes up to the first out-of-memory with the plain step, then the speed options at the
        largest batch that fitted; each combination in its own process (an OOM kills only it)."""
        fitted = None
        for batch in self.plan.batches:
            entry = self._bench_one(batch, "xla", "none")
            if not entry["ok"]:
                break  # out of memory (or out of time): a larger batch would not do better
            fitted = batch
        if fitted is None:
            return
        for attention, remat in self.plan.options:
            self._bench_one(fitted, attention, remat)

    def _bench_one(self, batch: int, attention: str, remat: str) -> dict:
        p = self.plan
        entry = {"batch": batch, "attention": attention, "remat": remat}
        if self.remaining("train_step") < 20:
            return self.record("train_step", ok=False, **entry, skipped="stage time box spent")
        out_json = self.work / "bench" / f"b{batch}_{attention}_{remat}.json"
        code, tail, seconds = self.cli(
            ["bench-train", str(p.config), *self.model_overrides(), f"batch_size={batch}",
             f"model.attention={attention}", f"model.remat={remat}", "--steps", str(p.steps), "--warmup",
             str(p.warmup), "--text-tokens", str(p.text_tokens), "--json", str(out_json),
             "--compilation-cache", str(self.work / "xla_cache")],
            self.remaining("train_step"))
        entry["seconds"] = round(seconds, 1)
        if code != 0 or not out_json.exists():
            oom = any(s in tail for s in ("RESOURCE_EXHAUSTED", "out of memory", "Out of memory"))
            return self.record("train_step", ok=False, **entry, oom=oom, timed_out=code == 124, error=tail[-800:])
        r = json.loads(out_json.read_text())
        mem = r.get("memory_bytes") or {}
        device_memory = r.get("device_memory") or {}
        xla_total = sum(mem.get(k, 0) for k in ("argument", "output", "temp")) - mem.get("alias", 0)
        return self.record("train_step", ok=True, **entry, step_time_median_s=r["step_time_median_s"],
                           step_time_min_s=r["step_time_min_s"], examples_per_s=r["examples_per_s"],
                           tokens_per_s=r["tokens_per_s"], achieved_tflops=r["achieved_tflops"], mfu=r["mfu"],
                           peak_tflops=r["peak_tflops_per_device"], compile_s=r["compile_s"],
                           seq_len=r["shapes"]["seq_len"], xla_memory_bytes=mem or None,
                           xla_memory_total_gib=xla_total / 2**30 if mem else None,
                           measured_peak_gib=device_memory.get("peak_gib"),
                           device_limit_gib=device_memory.get("limit_gib"))

    def run(self) -> bool:
        run_dir = self.work / "run"
        speech = "data.speech=[{type: synthetic, num_rows: 16}]"
        text = "data.text=[{type: synthetic, num_rows: 16}]"
        code, tail, seconds = self.cli(["train", str(self.plan.config), *self.model_overrides(), f"run_dir={run_dir}",
                                        speech, text, "data.audio_buckets=[3000]", *self.plan.run_overrides],
                                       self.remaining("run") * 0.75)
        self.record("run", ok=code == 0, part="train", seconds=round(seconds, 1),
                    **({} if code == 0 else {"error": tail[-800:]}))
        if code != 0:
            return False
        export = self.work / "export"
        code, tail, seconds = self.cli(["export", str(run_dir), "--out", str(export), "--format", "peft",
                                        "--overwrite"], self.remaining("run"))
        self.record("run", ok=code == 0, part="export", seconds=round(seconds, 1), path=str(export),
                    **({} if code == 0 else {"error": tail[-800:]}))
        if code != 0:
            return False
        # the same adapters as the default recipe exports them (lora.audio_only=true: --format adapter, the
        # base referenced): the variants stage times it against the merged computation (same weights, shapes)
        adapter = self.work / "export_adapter"
        code, tail, seconds = self.cli(["export", str(run_dir), "lora.audio_only=true", "--out", str(adapter),
                                        "--format", "adapter", "--overwrite"], self.remaining("run"))
        self.record("run", ok=code == 0, part="export adapter", seconds=round(seconds, 1), path=str(adapter),
                    **({} if code == 0 else {"error": tail[-800:]}))
        return code == 0

    def clips(self) -> list[str]:
        """`clips` wav files cycling through the plan's lengths (a generated speech-like signal)."""
        import numpy as np
        import soundfile as sf

        directory = self.work / "clips"
        directory.mkdir(exist_ok=True)
        paths = []
        for i in range(self.plan.clips):
            seconds = self.plan.clip_seconds[i % len(self.plan.clip_seconds)]
            t = np.arange(int(seconds * 16000)) / 16000
            rng = np.random.default_rng(i)
            wave = 0.3 * np.sin(2 * np.pi * (150 + 50 * np.sin(2 * np.pi * 3 * t)) * t) * (0.6 + 0.4 * np.sin(
                2 * np.pi * 4 * t)) + 0.01 * rng.standard_normal(t.size)
            path = directory / f"clip{i:02d}_{seconds:g}s.wav"
            sf.write(path, wave.astype(np.float32), 16000)
            paths.append(str(path))
        return paths

    def infer(self) -> None:
        p = self.plan
        out_json = self.work / "bench_infer.json"
        models = self.work / "models"
        code, tail, seconds = self.cli(
            ["bench-infer", str(self.work / "export"), "--cascade", str(models / "teacher"), str(models / "llm"),
             "--device", p.device, "--dtype", p.dtype, "--n", str(p.clips), "--warmup", "2", "--max-new-tokens",
             str(p.new_tokens), "--asr-tokens", str(p.new_tokens), "--clips", *self.clips(), "--json",
             str(out_json)], self.remaining("infer"))
        if code == 0 and out_json.exists():
            r = json.loads(out_json.read_text())
            self.record("infer", ok=True, seconds=round(seconds, 1), clip_seconds=list(p.clip_seconds),
                        device=r["device"], dtype=r["dtype"], n=r["n"], new_tokens=r["max_new_tokens"],
                        systems={k: {m: v[m] for m in ("mean_s", "median_s", "p90_s", "peak_allocated_gb",
                                                        "peak_reserved_gb") if m in v}
                                 for k, v in r["systems"].items()})
        else:
            self.record("infer", ok=False, seconds=round(seconds, 1), timed_out=code == 124, error=tail[-800:])

    def variants(self) -> None:
        p = self.plan
        out_json = self.work / "bench_variants.json"
        code, tail, seconds = self.cli(
            ["bench-infer", str(self.work / "export_adapter"), "--against", "merged-in-memory", "--device", p.device,
             "--dtype", p.dtype, "--n", str(p.variant_rounds), "--warmup", "1", "--max-new-tokens", str(p.new_tokens),
             "--batch-sizes", ",".join(map(str, p.variant_batches)), "--clips", self.clips()[0], "--json",
             str(out_json)], self.remaining("variants"))
        if code == 0 and out_json.exists():
            r = json.loads(out_json.read_text())
            self.record("variants", ok=True, seconds=round(seconds, 1),
                        **{k: r[k] for k in ("device", "dtype", "n", "max_new_tokens", "clip_seconds", "audio_tokens",
                                             "prompt_length", "sides", "ratio", "paired_ratio", "same_ids", "against",
                                             "load_before", "load_after")})
        else:
            self.record("variants", ok=False, seconds=round(seconds, 1), timed_out=code == 124, error=tail[-800:])

    def jax_gen(self) -> None:
        code, tail, seconds = self._python(["-m", "aura_jax.tools.device_check", "--jax-gen", str(self.work / "run"),
                                            "--gen-batch", str(self.plan.gen_batch), "--new-tokens",
                                            str(self.plan.new_tokens), "--gen-json", str(self.work / "jax_gen.json")],
                                           self.remaining("jax_gen"))
        path = self.work / "jax_gen.json"
        if code == 0 and path.exists():
            self.record("jax_gen", ok=True, seconds=round(seconds, 1), **json.loads(path.read_text()))
        else:
            self.record("jax_gen", ok=False, seconds=round(seconds, 1), timed_out=code == 124, error=tail[-800:])

    def _python(self, args: list[str], timeout: float) -> tuple[int, str, float]:
        """`python ARGS` from the repository, time-boxed; (return code (124: timed out), output tail, seconds).
        The whole output goes to log.txt."""
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
        if self.plan.device == "cpu":
            env.setdefault("JAX_PLATFORMS", "cpu")
        start = time.time()
        try:
            proc = subprocess.run([self.python, *args], env=env, capture_output=True, text=True,
                                  timeout=max(1.0, timeout), cwd=REPO)
            code, output = proc.returncode, proc.stdout + proc.stderr
        except subprocess.TimeoutExpired as e:
            decode = lambda b: b.decode(errors="replace") if isinstance(b, bytes) else (b or "")
            code, output = 124, decode(e.stdout) + decode(e.stderr) + f"\n(timed out after {timeout:.0f} s)"
        with open(self.log_path, "a") as f:
            f.write(output[-20000:] + "\n")
        return code, output[-3000:], time.time() - start

    # -- time boxes ---------------------------------------------------------------
    def begin(self, stage: str) -> None:
        self.stage_start = time.time()
        self.stage = stage
        self.log(f"stage {stage} (time box {self.plan.budget[stage]} s)")

    def remaining(self, stage: str) -> float:
        return self.plan.budget[stage] - (time.time() - self.stage_start)

    def summary(self) -> dict:
        summary = {"plan": {k: (str(v) if isinstance(v, Path) else v) for k, v in dataclasses.asdict(self.plan).items()},
                   "wall_s": round(time.time() - self.start, 1), "results": self.results}
        (self.out / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
        (self.out / "summary.md").write_text(format_markdown(summary))
        return summary


def format_markdown(summary: dict) -> str:
    g = lambda x, f="{:.3g}": "n/a" if x is None else f.format(x)
    rows = summary["results"]
    env = next((r for r in rows if r["stage"] == "env"), {})
    lines = [f"# Device check ({summary['wall_s']} s wall)", "",
             f"jax {env.get('jax')} ({env.get('backend')}: {', '.join(env.get('devices') or [])}), "
             f"torch {env.get('torch')}, transformers {env.get('transformers')}; {env.get('nvidia_smi') or ''}", "",
             "## Training step (bench-train, paper configuration)", "",
             "| batch | attention | remat | step median s | examples/s | TFLOP/s | MFU | measured peak GiB | "
             "XLA analysis GiB | compile s |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        if r["stage"] != "train_step" or "batch" not in r:
            continue
        if r["ok"]:
            lines.append(f"| {r['batch']} | {r['attention']} | {r['remat']} | {r['step_time_median_s']:.4f} | "
                         f"{r['examples_per_s']:.2f} | {r['achieved_tflops']:.1f} | "
                         f"{g(r['mfu'], '{:.1%}')} | {g(r['measured_peak_gib'], '{:.1f}')} | "
                         f"{g(r['xla_memory_total_gib'], '{:.1f}')} | {r['compile_s']:.1f} |")
        else:
            why = r.get("skipped") or ("out of memory" if r.get("oom") else "timed out" if r.get("timed_out")
                                       else "failed")
            lines.append(f"| {r['batch']} | {r['attention']} | {r['remat']} | {why} | | | | | | |")
    lines += ["", "## Short run and export", ""]
    lines += [f"- {r['part']}: {'ok' if r['ok'] else 'FAILED'} in {r['seconds']} s" for r in rows if r["stage"] == "run"]
    lines += ["", "## Inference: AuRA (export) vs cascade (bench-infer)", ""]
    for r in rows:
        if r["stage"] == "infer" and r["ok"]:
            lines += [f"{r['n']} clips of {r['clip_seconds']} s, {r['new_tokens']} new tokens, {r['dtype']}, "
                      f"{r['device']}", "", "| system | mean s | median s | p90 s | peak allocated GB |",
                      "|---|---|---|---|---|"]
            lines += [f"| {k} | {v['mean_s']:.3f} | {v['median_s']:.3f} | {v['p90_s']:.3f} | "
                      f"{g(v.get('peak_allocated_gb'), '{:.2f}')} |" for k, v in r["systems"].items()]
        elif r["stage"] == "infer":
            lines.append("- failed or timed out (see log.txt)")
    lines += ["", "## The cost of not merging: the adapter export against the same adapters merged "
              "(bench-infer --against)", ""]
    for r in rows:
        if r["stage"] == "variants" and r["ok"]:
            lines += [f"{r['n']} interleaved rounds, medians; a {r['clip_seconds']:.1f} s clip ({r['audio_tokens']} "
                      f"audio tokens of {r['prompt_length']}), {r['max_new_tokens']} new tokens, {r['dtype']}, "
                      f"{r['device']}", "", "| batch | side | prefill ms | TTFT ms | decode ms/token | total s | "
                      "peak extra GB |", "|---|---|---|---|---|---|---|"]
            for b, q in r["ratio"].items():
                for side in ("adapter", "merged"):
                    x = r["sides"][side][b]
                    lines.append(f"| {b} | {side} | {1e3 * x['prefill_s']:.1f} | {1e3 * x['ttft_s']:.1f} | "
                                 f"{1e3 * x['decode_s_per_token']:.2f} | {x['total_s']:.3f} | "
                                 f"{g(x.get('peak_extra_gb'), '{:.3f}')} |")
                lines.append(f"| {b} | adapter / merged | {q['prefill_s']:.3f} | {q['ttft_s']:.3f} | "
                             f"{q['decode_s_per_token']:.3f} | {q['total_s']:.3f} | |")
                p = r.get("paired_ratio", {}).get(b)
                if p:
                    lines.append(f"| {b} | adapter / merged, each round's (median) | {p['prefill_s']:.3f} | "
                                 f"{p['ttft_s']:.3f} | {p['decode_s_per_token']:.3f} | {p['total_s']:.3f} | |")
        elif r["stage"] == "variants":
            lines.append("- failed or timed out (see log.txt)")
    lines += ["", "## JAX generation (generate_aura)", ""]
    for r in rows:
        if r["stage"] == "jax_gen":
            lines.append(f"- batch {r.get('batch')}, {r.get('new_tokens')} new tokens: "
                         f"{g(r.get('samples_per_s'))} samples/s, {g(r.get('tokens_per_s'))} tokens/s"
                         if r["ok"] else "- failed or timed out (see log.txt)")
    failed = [r for r in rows if not r["ok"] and not r.get("oom") and not r.get("skipped")]
    lines += ["", f"stages failed: {len(failed)}"]
    return "\n".join(lines) + "\n"


def jax_generation(run_dir: str, batch: int, new_tokens: int) -> dict:
    """Samples/s of `generate_aura` on the run's student, batch `batch`, fixed `new_tokens` (no EOS stop)."""
    import jax
    import numpy as np

    from aura_jax.inference.generate import generate_aura
    from aura_jax.tokenizer import ChatTokenizer, audio_prompt_ids
    from aura_jax.training.checkpoint import restore_student

    config, model, _ = restore_student(run_dir, None, ["model.random_init="])
    tok = ChatTokenizer.from_pretrained(config.model.llm, audio_token=config.prompt.audio_token)
    ids = np.asarray([audio_prompt_ids(tok, config, config.prompt.asr_instruction)] * batch, np.int32)
    mask = np.ones_like(ids, bool)
    mel = np.random.default_rng(0).standard_normal((batch, config.audio.n_mels, config.audio.num_frames)).astype(
        np.float32)
    kw = dict(max_new_tokens=new_tokens, eos_token_id=[-1], pad_token_id=tok.pad_token_id)  # never stops early
    start = time.perf_counter()
    jax.block_until_ready(generate_aura(model, ids, mask, mel, **kw))
    first = time.perf_counter() - start
    times = []
    for _ in range(3):
        start = time.perf_counter()
        jax.block_until_ready(generate_aura(model, ids, mask, mel, **kw))
        times.append(time.perf_counter() - start)
    best = min(times)
    return {"batch": batch, "new_tokens": new_tokens, "first_call_s": first, "times_s": times,
            "samples_per_s": batch / best, "tokens_per_s": batch * new_tokens / best,
            "backend": jax.default_backend()}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="device_check", description=__doc__.split("\n\n")[0])
    p.add_argument("--small", action="store_true", help="tiny shapes on the CPU (about a minute; CI runs it)")
    p.add_argument("--out", default=os.environ.get("OUT") or "runs/device_check/out",
                   help="results folder (default $OUT): results.jsonl, summary.json, summary.md, log.txt")
    p.add_argument("--work", default=None, help="models, runs, exports (default: a local folder beside --out)")
    p.add_argument("--stages", default="env,models,train_step,run,infer,variants,jax_gen",
                   help="comma-separated subset, in order")
    p.add_argument("--jax-gen", default=None, help=argparse.SUPPRESS)  # the jax_gen stage's subprocess
    p.add_argument("--gen-batch", type=int, default=16, help=argparse.SUPPRESS)
    p.add_argument("--new-tokens", type=int, default=32, help=argparse.SUPPRESS)
    p.add_argument("--gen-json", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.jax_gen:
        result = jax_generation(args.jax_gen, args.gen_batch, args.new_tokens)
        Path(args.gen_json).write_text(json.dumps(result))
        return 0
    plan = SMALL if args.small else FULL
    out = Path(args.out).absolute()
    work = Path(args.work).absolute() if args.work else out.parent / (out.name + "_work")
    check = Check(out, work, plan, sys.executable)
    stages = [s for s in args.stages.split(",") if s]
    unknown = [s for s in stages if s not in plan.budget]
    if unknown:
        p.error(f"unknown stage(s) {unknown}; use {','.join(plan.budget)}")
    ok = {}
    for stage in stages:
        needs = {"train_step": "models", "run": "models", "infer": "run", "variants": "run", "jax_gen": "run"}.get(stage)
        if needs in ok and not ok[needs]:
            check.record(stage, ok=False, skipped=f"{needs} failed")
            ok[stage] = False
            continue
        check.begin(stage)
        result = getattr(check, stage)()
        ok[stage] = result is not False
        check.summary()  # after every stage: a killed run keeps a summary of what finished
    summary = check.summary()
    check.log(f"done in {summary['wall_s']} s; {out / 'summary.md'}")
    failed = [r for r in summary["results"] if not r["ok"] and not r.get("oom") and not r.get("skipped")]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
