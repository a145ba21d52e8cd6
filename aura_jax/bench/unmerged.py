"""`aura-jax bench-infer ADAPTER_EXPORT --against MERGED_EXPORT`: the cost of not merging. An audio-only
run (`lora.audio_only=true`, the demo's default recipe) exports as `--format adapter`: its LoRA stays
unmerged beside the base weights (`AudioOnlyLoRALinear`), added at the prefill's audio positions only.
A merged export folds the update into the weights. Both sides answer the same spoken question at each
batch size, in one process, interleaved (the order alternates round by round), each timed as:

  prefill_s            the spliced prompt (text + audio) through the model, one call (where the adapter
                       export pays its LoRA: two rank-r matmuls per adapted projection, K layers)
  ttft_s               log-mel features + splice + prefill + the first greedy token
  decode_s_per_token   each further token through the KV cache (the adapter export's gate is off there:
                       the base weights, exactly; the merged export: W + (α/r)BA in K layers, same shapes)
  total_s              ttft_s + the decoding of `--max-new-tokens` − 1 tokens (fixed length: no EOS stop)
  peak_extra_gb        the process's peak memory during the answer above what it held before (CUDA:
                       max_memory_allocated; CPU: VmHWM, reset through /proc/self/clear_refs)
  weights_gb           the side's parameters (the adapter export: base + A and B in float32)

Ratios adapter / merged: of the two medians, and the median of each round's ratio (the two sides of a round
ran one after the other, so load that drifts across the run cancels there).

`--against` left out (or `--against merged-in-memory`): the adapter export's own A and B folded into its
base Linear modules in memory, which is a merged export's computation without writing one (what the
device check uses at 7B). Medians over `--n` rounds after `--warmup`."""

from __future__ import annotations

import statistics
import time
from pathlib import Path

IN_MEMORY = "merged-in-memory"


def merged_in_memory(lm) -> None:
    """Fold each AudioOnlyLoRALinear of `lm.model` into its base Linear (W + (α/r)·B·A in float32, cast to
    W's dtype) and put the Linear back: the model a merged export loads. The gate is dropped."""
    import torch

    from aura_jax.torch.model import AudioOnlyLoRALinear

    swapped = 0
    for name, module in list(lm.model.named_modules()):
        for child_name, child in list(module.named_children()):
            if isinstance(child, AudioOnlyLoRALinear):
                base = child.base
                with torch.no_grad():
                    w = base.weight.float() + child.scale * (child.lora_B.float() @ child.lora_A.float())
                    base.weight.copy_(w.to(base.weight.dtype))
                setattr(module, child_name, base)
                swapped += 1
    if not swapped:
        raise ValueError("merged_in_memory: no AudioOnlyLoRALinear to fold (give an adapter export)")
    lm.gate = None


def _peak_reset(device: str) -> float:
    """Start a peak-memory window; the bytes held now."""
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        return float(torch.cuda.memory_allocated())
    try:
        Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS (Linux)
    except OSError:
        return float("nan")
    return _status_bytes("VmRSS")


def _peak_read(device: str, start: float) -> float | None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()
        return (torch.cuda.max_memory_allocated() - start) / 1e9
    peak = _status_bytes("VmHWM")
    return None if peak != peak or start != start else (peak - start) / 1e9


def _status_bytes(field: str) -> float:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return float(line.split()[1]) * 1024
    except OSError:
        pass
    return float("nan")


def answer_timed(lm, wave, question: str, batch: int, new_tokens: int, device: str) -> dict:
    """One greedy answer per row (`batch` copies of the clip), fixed length, timed in its parts."""
    import torch

    from aura_jax.torch.systems import sync

    held = _peak_reset(device)
    sync(device)
    start = time.perf_counter()
    embeds, mask, _ = lm.prepare_batch([wave] * batch, question)
    lm.arm(lm.audio_mask)  # the adapter export's prefill: its LoRA at the audio positions (merged: no gate)
    with torch.no_grad():
        sync(device)
        t_prefill = time.perf_counter()
        out = lm.model(inputs_embeds=embeds, attention_mask=mask, use_cache=True)
        token = out.logits[:, -1].argmax(-1)
        sync(device)
        t_first = time.perf_counter()
        first_logits = out.logits[:, -1].float()
        cache, tokens = out.past_key_values, [token]
        for _ in range(new_tokens - 1):
            mask = torch.cat([mask, mask.new_ones(batch, 1)], dim=1)
            out = lm.model(input_ids=token[:, None], attention_mask=mask, past_key_values=cache, use_cache=True)
            cache, token = out.past_key_values, out.logits[:, -1].argmax(-1)
            tokens.append(token)
        sync(device)
        end = time.perf_counter()
    steps = max(1, new_tokens - 1)
    return {"prefill_s": t_first - t_prefill, "ttft_s": t_first - start, "total_s": end - start,
            "decode_s_per_token": (end - t_first) / steps, "peak_extra_gb": _peak_read(device, held),
            "ids": torch.stack(tokens, 1).tolist(), "first_logits": first_logits}


def _weights_gb(lm) -> float:
    return sum(p.numel() * p.element_size() for p in lm.model.parameters()) / 1e9


def run_unmerged_benchmark(adapter: str, against: str | None = None, *, batch_sizes=(1, 8), n: int = 7,
                           warmup: int = 2, max_new_tokens: int = 32, clip: str | None = None,
                           question: str | None = None, device: str = "cpu", dtype: str | None = None,
                           wave=None) -> dict:
    """Medians per side and batch size, the adapter/merged ratios, and whether both decoded the same ids."""
    import torch

    from aura_jax.bench.clips import DEFAULT_QUESTION, speech_clip
    from aura_jax.bench.machine import load_average
    from aura_jax.torch import AuraSpeechLM
    from aura_jax.torch.model import _torch_dtype

    question = question or DEFAULT_QUESTION
    first = AuraSpeechLM.from_pretrained(adapter, device=device, dtype=dtype)
    if first.gate is None:
        raise ValueError(f"{adapter}: not an adapter export (aura_config kind {first.aura.get('kind')!r}); "
                         "--against compares a --format adapter export with a merged one")
    if against in (None, "", IN_MEMORY):
        merged = AuraSpeechLM.from_pretrained(adapter, device=device, dtype=dtype)
        merged_in_memory(merged)
        against = IN_MEMORY
    else:
        merged = AuraSpeechLM.from_pretrained(against, device=device, dtype=dtype)
        if merged.gate is not None:
            raise ValueError(f"--against {against}: an adapter export; give a merged (or PEFT) one")
    sides = {"adapter": first, "merged": merged}
    if wave is None and clip:
        from aura_jax.audio import load_audio

        wave = load_audio(clip, 16000)
    elif wave is None:
        wave = speech_clip(2.0)
    load_before = load_average()
    times = {s: {b: [] for b in batch_sizes} for s in sides}
    ids = {s: {} for s in sides}
    for rep in range(warmup + n):
        order = list(sides) if rep % 2 == 0 else list(sides)[::-1]  # interleaved: neither side always first
        for b in batch_sizes:
            for s in order:
                r = answer_timed(sides[s], wave, question, b, max_new_tokens, device)
                ids[s][b] = r.pop("ids")
                r.pop("first_logits")
                if rep >= warmup:
                    times[s][b].append(r)
    med = lambda rows, k: (statistics.median(x[k] for x in rows)
                           if rows and all(x[k] is not None for x in rows) else None)
    keys = ("prefill_s", "ttft_s", "decode_s_per_token", "total_s", "peak_extra_gb")
    result = {"adapter": str(Path(adapter).absolute()), "against": against if against == IN_MEMORY else
              str(Path(against).absolute()), "device": device if not device.startswith("cuda") else
              torch.cuda.get_device_name(), "dtype": str(_torch_dtype(dtype, first.aura)).replace("torch.", ""),
              "threads": torch.get_num_threads(), "n": n, "warmup": warmup, "max_new_tokens": max_new_tokens,
              "clip_seconds": len(wave) / 16000, "audio_tokens": int(first.audio_mask[0].sum()),
              "prompt_length": int(first.audio_mask.shape[1]), "load_before": load_before,
              "sides": {s: {"weights_gb": _weights_gb(sides[s]),
                            **{str(b): {k: med(times[s][b], k) for k in keys} for b in batch_sizes}} for s in sides}}
    result["load_after"] = load_average()
    result["ratio"] = {str(b): {k: result["sides"]["adapter"][str(b)][k] / result["sides"]["merged"][str(b)][k]
                                for k in ("prefill_s", "ttft_s", "decode_s_per_token", "total_s")}
                       for b in batch_sizes}
    # each round's adapter time over the merged one of the same round (adjacent in time), median over rounds:
    # robust to load that drifts across the run
    result["paired_ratio"] = {str(b): {k: statistics.median(a[k] / m[k] for a, m in zip(times["adapter"][b],
                                                                                       times["merged"][b]))
                                       for k in ("prefill_s", "ttft_s", "decode_s_per_token", "total_s")}
                              for b in batch_sizes}
    result["same_ids"] = {str(b): ids["adapter"][b] == ids["merged"][b] for b in batch_sizes}
    result["ids"] = {s: {str(b): ids[s][b] for b in batch_sizes} for s in sides}  # the last round's
    result["rounds"] = {s: {str(b): [{k: x[k] for k in ("prefill_s", "decode_s_per_token")} for x in times[s][b]]
                            for b in batch_sizes} for s in sides}
    return result


def format_unmerged_table(r: dict) -> str:
    g = lambda x, f: "—" if x is None else f.format(x)
    lines = [f"{r['device']}, {r['dtype']}, {r['threads']} threads; {r['n']} interleaved rounds ({r['warmup']} warm-up "
             f"excluded), medians; a {r['clip_seconds']:.1f} s clip ({r['audio_tokens']} audio tokens of "
             f"{r['prompt_length']}), {r['max_new_tokens']} new tokens; merged side: {r['against']}; "
             f"load average before {r['load_before']}, after {r['load_after']}", "",
             "| batch | side | prefill ms | TTFT ms | decode ms/token | total s | peak extra GB | weights GB |",
             "|---|---|---|---|---|---|---|---|"]
    for b in r["ratio"]:
        for s in ("adapter", "merged"):
            x = r["sides"][s][b]
            lines.append(f"| {b} | {s} | {1e3 * x['prefill_s']:.1f} | {1e3 * x['ttft_s']:.1f} | "
                         f"{1e3 * x['decode_s_per_token']:.2f} | {x['total_s']:.3f} | "
                         f"{g(x['peak_extra_gb'], '{:.3f}')} | {r['sides'][s]['weights_gb']:.3f} |")
        for label, key in (("adapter / merged (of the medians)", "ratio"),
                           ("adapter / merged (median of each round's)", "paired_ratio")):
            q = r[key][b]
            lines.append(f"| {b} | {label} | {q['prefill_s']:.3f} | {q['ttft_s']:.3f} | "
                         f"{q['decode_s_per_token']:.3f} | {q['total_s']:.3f} | | |")
    return "\n".join(lines)


def main(args) -> int:
    import json

    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    sizes = [int(x) for x in (args.batch_sizes or "1,8").split(",") if x]
    r = run_unmerged_benchmark(args.exported, args.against, batch_sizes=sizes, n=args.n, warmup=args.warmup,
                               max_new_tokens=args.max_new_tokens, clip=(args.clips or [None])[0],
                               device=args.device, dtype=args.dtype)
    print(format_unmerged_table(r))
    path = Path(args.json or "runs/bench_infer/unmerged.json")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(r, indent=2))
    print(f"wrote {path}")
    return 0

