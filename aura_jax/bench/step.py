"""The JAX training step set up for timing: `Trainer` (the very step `aura-jax train` runs), one
fixed batch of the configured shapes, compiled once. `bench-train` and `bench-train --parts`
both start here; what XLA reports of the compiled program (memory, FLOPs) is read here too."""

from __future__ import annotations

import time

import numpy as np

from aura_jax.bench.machine import step_stats, timed_steps


def synthetic_batch(config, *, vocab_size: int, placeholder_id: int, text_len: int | None = None,
                    rows: int | None = None, seed: int = 0) -> dict[str, np.ndarray]:
    """A batch of the configured shapes: every row speech (placeholder at slot 8, full-length audio),
    random token ids, the second half of the text slots CE targets."""
    from aura_jax.data.examples import has_teacher_features

    rng = np.random.default_rng(seed)
    b = config.batch_size if rows is None else rows
    t = config.data.text_bucket if text_len is None else text_len
    frames = max(config.data.audio_buckets)
    m, segments = config.audio.n_mels, config.audio.teacher_segments
    if t < 2:
        raise ValueError(f"text_len={t} must be >= 2")
    ids = rng.integers(0, vocab_size - 1, size=(b, t), dtype=np.int32)
    ids = np.where(ids >= placeholder_id, ids + 1, ids).astype(np.int32)  # never the placeholder by chance
    ids[:, min(8, t // 4)] = placeholder_id
    loss_mask = np.zeros((b, t), bool)
    loss_mask[:, t // 2:] = True
    features = (rng.standard_normal((b, m, frames)) * 0.5).astype(np.float32)
    batch = dict(input_ids=ids, attention_mask=np.ones((b, t), bool), loss_mask=loss_mask,
                 audio_features=features, audio_valid_frames=np.full((b,), frames, np.int32))
    tf = config.audio.teacher_frames
    if has_teacher_features(frames, tf, segments):
        teacher = (rng.standard_normal((b, segments, m, tf)) * 0.5).astype(np.float32)
        teacher[:, 0, :, :min(frames, tf)] = features[..., :tf]
        batch["teacher_features"] = teacher
        batch["teacher_valid_frames"] = np.full((b, segments), tf, np.int32)
        batch["teacher_valid_frames"][:, 0] = min(frames, tf)
    return batch


def trainable_arrays(params) -> dict[str, np.ndarray]:
    """The Trainable nnx.State as {'llm/layers/0/self_attn/q_proj/lora_a': array, ...} on the host."""
    import jax
    from flax import nnx

    out = {}
    for path, var in nnx.to_flat_state(params):
        value = var.get_value() if hasattr(var, "get_value") else getattr(var, "value", var)
        out["/".join(str(p) for p in path)] = np.asarray(jax.device_get(value))
    return out


def memory_analysis(compiled) -> dict | None:
    """XLA's compiled memory analysis in bytes (None where the backend has none)."""
    try:
        m = compiled.memory_analysis()
    except Exception:
        return None
    if m is None:
        return None
    return {k: int(getattr(m, k + "_size_in_bytes")) for k in ("argument", "output", "temp", "alias")}


def cost_analysis_flops(compiled) -> float | None:
    """XLA's FLOP count of a compiled program (per device under SPMD), or None if the backend has none."""
    try:
        cost = compiled.cost_analysis()
    except Exception:
        return None
    if isinstance(cost, (list, tuple)):
        cost = cost[0] if cost else None
    if not cost or "flops" not in cost:
        return None
    return float(cost["flops"])


def jax_setup(config, *, data: str = "synthetic", text_tokens: int | None = None, log=print):
    """`Trainer` and one batch of the configured shapes: (trainer, host batch (numpy), device batch,
    placeholder id or None). `bench-train` and `bench-train --parts` both start here."""
    import jax

    from aura_jax.build import ensure_random_checkpoints, placeholder_token_id
    from aura_jax.hf import read_config
    from aura_jax.training import sharding as shd
    from aura_jax.training.train import Trainer

    ensure_random_checkpoints(config)
    trainer = Trainer(config, log=log)
    vocab = int(read_config(config.model.llm)["vocab_size"])
    pid = None
    if data == "config":
        from aura_jax.data.pipeline import TrainData
        from aura_jax.tokenizer import ChatTokenizer

        tokenizer = ChatTokenizer.from_pretrained(config.model.llm, audio_token=config.prompt.audio_token)
        local = TrainData(config, tokenizer, process_index=jax.process_index(),
                          process_count=jax.process_count()).batch(0)
    else:
        pid = placeholder_token_id(config.model.llm, config.prompt.audio_token, vocab)
        full = synthetic_batch(config, vocab_size=vocab, placeholder_id=pid, text_len=text_tokens)
        b = config.batch_size // jax.process_count()
        local = {k: v[jax.process_index() * b:(jax.process_index() + 1) * b] for k, v in full.items()}
    host_batch = {k: np.asarray(v) for k, v in local.items()}
    batch = shd.global_batch({k: v for k, v in local.items() if k != "example_index"}, trainer.mesh, trainer.rules)
    return trainer, host_batch, batch, pid


def prepare_jax(config, *, data: str = "synthetic", text_tokens: int | None = None,
                keep_initial_trainables: bool = False, log=print):
    """Build `Trainer` and its batch, compile the step; returns (step, finish): `step()` runs one step to
    completion and returns its metrics, `finish(times, first_metrics)` the result dict of `bench_jax`."""
    import jax

    from aura_jax.tools.flops import hlo_matmul_flops_by_dtype

    trainer, host_batch, batch, pid = jax_setup(config, data=data, text_tokens=text_tokens, log=log)
    initial = trainable_arrays(trainer.state.params) if keep_initial_trainables else None
    start = time.perf_counter()
    compiled = trainer.compiled_step(batch)
    compile_s = time.perf_counter() - start

    def step():
        trainer.state, metrics = compiled(trainer.state, trainer.frozen, batch)
        return jax.block_until_ready(metrics)

    def finish(times: list[float], first: dict) -> dict:
        device = jax.devices()[0]
        stats = device.memory_stats() if hasattr(device, "memory_stats") else None  # None on CPU
        device_memory = ({"peak_gib": stats["peak_bytes_in_use"] / 2**30,
                          "limit_gib": stats.get("bytes_limit", 0) / 2**30}
                         if stats and "peak_bytes_in_use" in stats else None)
        return {"compile_s": compile_s, "step_time": step_stats(times),
                "step0": {k: float(np.asarray(jax.device_get(first[k]))) for k in ("loss", "ce", "distill")},
                "batch_shapes": {k: tuple(v.shape) for k, v in batch.items()},
                "xla_flops_per_device": cost_analysis_flops(compiled), "memory": memory_analysis(compiled),
                "dot_flops_by_dtype": hlo_matmul_flops_by_dtype(compiled.as_text()),
                "backend": jax.default_backend(), "device_kind": device.device_kind,
                "num_devices": jax.device_count(), "mesh": dict(trainer.mesh.shape), "host_batch": host_batch,
                "initial_trainables": initial, "placeholder_id": pid, "device_memory": device_memory}

    return step, finish


def bench_jax(config, *, steps: int = 10, warmup: int = 2, data: str = "synthetic", text_tokens: int | None = None,
              keep_initial_trainables: bool = False, log=print) -> dict:
    """Compile once, warm up, time `steps` steps of `Trainer`'s compiled step on one fixed batch."""
    if steps < 1 or warmup < 0:
        raise ValueError(f"--steps={steps} must be >= 1 and --warmup={warmup} >= 0")
    step, finish = prepare_jax(config, data=data, text_tokens=text_tokens,
                               keep_initial_trainables=keep_initial_trainables, log=log)
    return finish(*timed_steps(step, warmup, steps))
