"""Inference programs compiled for one device of a target: AuRA against the cascade.

AuRA (the exported, LoRA-merged model): patch embedding + splice of N audio tokens at the prompt's
placeholder, prefill, then KV-cache greedy decoding — `generate.generate_aura`, jitted whole. AuRA's
adapter export (`lora.audio_only=true`, the demo's default recipe: `--format adapter`): the same program
with the LoRA kept unmerged beside the base kernels (its A and B are weights too) and added at the
prefill's audio positions only (`adapter_mask`); decoding runs the base kernels. The
cascade: Whisper (encoder + KV-cache decoding of the transcript, `generate._decode_whisper`), then
the LLM decoding an answer from the transcript prompt (`generate._decode`). Both models of the
cascade stay resident, so its peak is both models' weights plus the larger stage's working
memory. Every array is abstract: no weight is read.
"""

from __future__ import annotations

import dataclasses
import time

from aura_jax.tools import targets as tg


def _spec(shape, dtype, sharding):
    import jax

    return jax.ShapeDtypeStruct(tuple(shape), dtype, sharding=sharding)


def _abstract_state(module, sharding):
    import jax
    from flax import nnx

    graphdef, state = nnx.split(module)
    return graphdef, jax.tree.map(lambda x: _spec(x.shape, x.dtype, sharding), state)


def _nbytes(tree) -> int:
    import jax
    import numpy as np

    return int(sum(np.prod(x.shape) * np.dtype(x.dtype).itemsize for x in jax.tree.leaves(tree)))


def _compile(fn, *args, **static):
    start = time.perf_counter()
    compiled = fn.lower(*args, **static).compile()
    return compiled, time.perf_counter() - start


def _stage(compiled, weights: int, seconds: float, chip: tg.Chip, usable_fraction: float) -> dict:
    from aura_jax.tools import hlo_stats

    mem = hlo_stats.memory(compiled, chip.hbm_bytes, usable_fraction)
    mem["weights"] = weights
    mem["working"] = mem["total"] - weights  # inputs other than weights, outputs, temporaries, code
    return {"memory": mem, "compile_s": seconds}


@dataclasses.dataclass
class Shapes:
    batch: int = 1
    prompt_tokens: int = 64
    max_new_tokens: int = 64
    asr_tokens: int = 128
    audio_frames: int = 3000


def compile_aura(config, device, shapes: Shapes, chip: tg.Chip, usable_fraction: float,
                 variant: str = "merged") -> dict:
    """`variant` "merged": LoRA folded into the kernels (dropped: same shapes); "adapter": LoRA kept, acting at
    the audio positions only (lora.audio_only=true, whatever the config says)."""
    import jax
    import jax.numpy as jnp
    from flax import nnx

    from aura_jax.build import load_aura
    from aura_jax.config import MeshConfig
    from aura_jax.inference.generate import generate_aura
    from aura_jax.models.lora import drop_lora
    from aura_jax.training import sharding as shd

    mesh = shd.make_mesh(MeshConfig(data=1, fsdp=1, tensor=1), [device])
    sharding = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
    if variant not in ("merged", "adapter"):
        raise ValueError(f"variant {variant!r}: merged or adapter")
    cfg = dataclasses.replace(config, loss=dataclasses.replace(config.loss, distill_weight=0.0),
                              lora=dataclasses.replace(config.lora, audio_only=variant == "adapter"))
    model = load_aura(cfg, abstract=True)  # no teacher, no heads: what the export holds
    if variant == "merged":
        drop_lora(model.llm)  # merged into the base kernels: same shapes
    graphdef, state = _abstract_state(model, sharding)

    @jax.jit
    def aura_generate(state, input_ids, attention_mask, features):
        return generate_aura(nnx.merge(graphdef, state), input_ids, attention_mask, features,
                             max_new_tokens=shapes.max_new_tokens, eos_token_id=0)

    b = shapes.batch
    args = (state, _spec((b, shapes.prompt_tokens), jnp.int32, sharding),
            _spec((b, shapes.prompt_tokens), jnp.bool_, sharding),
            _spec((b, config.audio.n_mels, shapes.audio_frames), jnp.float32, sharding))
    compiled, seconds = _compile(aura_generate, *args)
    out = _stage(compiled, _nbytes(state), seconds, chip, usable_fraction)
    out["audio_tokens"] = shapes.audio_frames // config.audio.patch_frames
    out["sequence"] = shapes.prompt_tokens + out["audio_tokens"] - 1
    return out


def compile_cascade(config, device, shapes: Shapes, chip: tg.Chip, usable_fraction: float,
                    whisper_dir: str | None = None) -> dict:
    import jax
    import jax.numpy as jnp

    from aura_jax.config import MeshConfig
    from aura_jax.hf import from_pretrained
    from aura_jax.inference.generate import _decode, _decode_whisper
    from aura_jax.training import sharding as shd

    mesh = shd.make_mesh(MeshConfig(data=1, fsdp=1, tensor=1), [device])
    sharding = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
    m = config.model
    whisper_dir = whisper_dir or m.teacher
    dtype = dict(compute_dtype=m.compute_dtype, weights=False)
    encoder = from_pretrained(whisper_dir, m.param_dtype, **dtype)  # every layer: the cascade transcribes
    decoder = from_pretrained(whisper_dir, m.param_dtype, part="decoder", **dtype)
    llm = from_pretrained(m.llm, m.param_dtype, **dtype)
    b = shapes.batch
    enc_g, enc_s = _abstract_state(encoder, sharding)
    dec_g, dec_s = _abstract_state(decoder, sharding)
    llm_g, llm_s = _abstract_state(llm, sharding)
    i32 = lambda *shape: _spec(shape, jnp.int32, sharding)
    asr, asr_s = _compile(_decode_whisper, enc_g, enc_s, dec_g, dec_s,
                          _spec((b, encoder.config.num_mel_bins, 3000), jnp.float32, sharding), i32(b, 4), i32(1),
                          i32(), max_new_tokens=shapes.asr_tokens)
    # The LLM reads the transcript inside the same prompt: prompt + transcript tokens.
    t = shapes.prompt_tokens + shapes.asr_tokens
    dtype_c = jnp.dtype(m.compute_dtype)
    key = jax.eval_shape(lambda: jax.random.key(0))
    lm, lm_s = _compile(_decode, llm_g, llm_s, _spec((b, t, llm.config.hidden_size), dtype_c, sharding),
                        _spec((b, t), jnp.bool_, sharding), None, None, i32(1), i32(),
                        _spec(key.shape, key.dtype, sharding), max_new_tokens=shapes.max_new_tokens,
                        temperature=0.0, top_p=1.0)
    stages = {"whisper": _stage(asr, _nbytes(enc_s) + _nbytes(dec_s), asr_s, chip, usable_fraction),
              "llm": _stage(lm, _nbytes(llm_s), lm_s, chip, usable_fraction)}
    weights = sum(s["memory"]["weights"] for s in stages.values())
    peak = weights + max(s["memory"]["working"] for s in stages.values())
    return {"stages": stages, "weights": weights, "peak": peak, "fits": peak <= usable_fraction * chip.hbm_bytes,
            "llm_prompt_tokens": t}


def compile_all(config, target: tg.Target, device, *, prompt_tokens: int, max_new_tokens: int, asr_tokens: int,
                usable_fraction: float = 0.9, log=print) -> dict:
    shapes = Shapes(prompt_tokens=prompt_tokens, max_new_tokens=max_new_tokens, asr_tokens=asr_tokens,
                    audio_frames=config.audio.num_frames)
    chip = target.spec
    aura = compile_aura(config, device, shapes, chip, usable_fraction)
    log(f"AuRA generation: {aura['memory']['total'] / 2**30:.2f} GiB on one {device.device_kind}")
    adapter = compile_aura(config, device, shapes, chip, usable_fraction, variant="adapter")
    log(f"AuRA adapter export (LoRA unmerged, audio positions only): {adapter['memory']['total'] / 2**30:.2f} GiB")
    cascade = compile_cascade(config, device, shapes, chip, usable_fraction)
    log(f"cascade: peak {cascade['peak'] / 2**30:.2f} GiB (weights {cascade['weights'] / 2**30:.2f} GiB)")
    return {"device_kind": device.device_kind, "shapes": dataclasses.asdict(shapes), "aura": aura,
            "aura_adapter": adapter, "cascade": cascade, "paper_gb": {"aura": 10.6, "cascade": 19.2}}


def format_inference(r: dict) -> str:
    gb = lambda b: f"{b / 1e9:.1f} GB ({b / 2**30:.2f} GiB)"
    s, a, c = r["shapes"], r["aura"], r["cascade"]
    w, l = c["stages"]["whisper"]["memory"], c["stages"]["llm"]["memory"]
    return "\n".join([
        f"inference on one {r['device_kind']} (batch {s['batch']}, greedy; XLA buffer assignment, not a measurement):",
        f"| system | program | weights | working memory | peak | paper (1x H20, measured) |",
        "|---|---|---|---|---|---|",
        f"| AuRA (merged; {a['audio_tokens']} audio + {s['prompt_tokens']} prompt tokens, {s['max_new_tokens']} new) "
        f"| one: embed+splice, prefill, decode | {gb(a['memory']['weights'])} | {gb(a['memory']['working'])} "
        f"| {gb(a['memory']['total'])} | {r['paper_gb']['aura']} GB |",
        *([f"| AuRA adapter export (lora.audio_only: LoRA unmerged, at the {a['audio_tokens']} audio positions of "
           f"the prefill) | one, as above | {gb(r['aura_adapter']['memory']['weights'])} "
           f"| {gb(r['aura_adapter']['memory']['working'])} | {gb(r['aura_adapter']['memory']['total'])} | |"]
          if "aura_adapter" in r else []),
        f"| cascade (Whisper {s['asr_tokens']} tokens, then LLM {c['llm_prompt_tokens']} prompt tokens, "
        f"{s['max_new_tokens']} new) | two, both models resident | {gb(c['weights'])} "
        f"| {gb(max(w['working'], l['working']))} (larger stage) | {gb(c['peak'])} | {r['paper_gb']['cascade']} GB |",
    ])
