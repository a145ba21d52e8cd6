"""Training: state, the jitted step, and the loop.

One jitted step takes (train state, frozen weights, batch): the frozen
backbone is an argument (never a closure, which XLA would embed as constants)
and is not donated; the train state (trainable params, optimizer state, step,
rng) is donated. Shardings are explicit and come from the logical-axis rules.
Each batch shape (text bucket × audio bucket) is compiled once, ahead of use,
with its memory analysis printed.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
import yaml
from flax import nnx, struct
from jax.sharding import NamedSharding, PartitionSpec

from aura_jax.build import ensure_random_checkpoints, load_aura
from aura_jax.config import Config, ConfigError, OptimConfig
from aura_jax.models.layers import Trainable, activation_constraint, store_frozen_dot_weights
from aura_jax.training import preflight
from aura_jax.training import sharding as shd
from aura_jax.training.checkpoint import Checkpointer
from aura_jax.training.distributed import is_main_process
from aura_jax.training.loss import aura_loss, loss_normalizers
from aura_jax.training.metrics import MetricsWriter

# Batch entries the step never reads (which rows a batch holds: metrics' batch_id): kept on the host, so
# the compiled program is the same whether or not a batch carries them (bench-train's batch does not).
HOST_ONLY = ("example_index",)


@struct.dataclass
class TrainState:
    params: Any  # nnx.State of the Trainable parameters only
    opt_state: Any  # optax state: exists for trainables only
    step: jax.Array
    rng: jax.Array


def _leaves_named(params, name: str):
    """A pytree of bools over `params`: True where `name` is a part of the leaf's path."""
    part = lambda k: getattr(k, "key", getattr(k, "name", None))
    return jax.tree_util.tree_map_with_path(lambda path, _: any(part(k) == name for k in path), params)


def lora_b_leaves(params):
    """True at the LoRA B matrices."""
    return _leaves_named(params, "lora_b")


def patch_embedding_leaves(params):
    """True at the audio patch embedding's parameters (`AuraModel.audio_embed`)."""
    return _leaves_named(params, "audio_embed")


def build_optimizer(cfg: OptimConfig, total_steps: int | None = None):
    """AdamW, linear warm-up then constant (the paper) or cosine decay to the last step, global-norm
    clipping; a non-finite gradient skips the update (optax.apply_if_finite keeps params and moments
    unchanged)."""
    if cfg.schedule not in ("constant", "cosine"):
        raise ConfigError(f"optim.schedule={cfg.schedule!r}: use constant or cosine")
    if cfg.schedule == "cosine":
        if not total_steps or total_steps <= cfg.warmup_steps:
            raise ConfigError(f"optim.schedule=cosine needs the run's length (steps={total_steps}) to exceed "
                              f"optim.warmup_steps={cfg.warmup_steps}")
        schedule = optax.schedules.warmup_cosine_decay_schedule(
            0.0, cfg.learning_rate, cfg.warmup_steps, total_steps, end_value=cfg.final_lr_ratio * cfg.learning_rate)
    # (optax's warm-up schedule with 0 warm-up steps stays at 0 forever)
    elif cfg.warmup_steps > 0:
        schedule = optax.schedules.warmup_constant_schedule(0.0, cfg.learning_rate, cfg.warmup_steps)
    else:
        schedule = optax.constant_schedule(cfg.learning_rate)
    parts = [optax.clip_by_global_norm(cfg.grad_clip)] if cfg.grad_clip > 0 else []
    parts.append(optax.adamw(schedule, b1=cfg.b1, b2=cfg.b2, eps=cfg.eps, weight_decay=cfg.weight_decay))
    if cfg.lora_b_lr_ratio != 1.0:  # LoRA+: B's whole AdamW step (weight decay included) scaled = B's own rate
        parts.append(optax.masked(optax.scale(cfg.lora_b_lr_ratio), lora_b_leaves))
    if cfg.patch_warmup_steps:  # steps 0 .. N-1 move the patch embedding alone
        n = cfg.patch_warmup_steps
        parts.append(optax.masked(optax.scale_by_schedule(lambda count: (count >= n).astype(jnp.float32)),
                                  lambda params: jax.tree.map(lambda x: not x, patch_embedding_leaves(params))))
    return optax.apply_if_finite(optax.chain(*parts), max_consecutive_errors=2**31 - 1), schedule


def make_grad_fn(graphdef, *, grad_accum_steps: int = 1, micro_constraint=None):
    """(params, frozen, batch) → (gradients w.r.t. params, loss metrics) of the whole batch.

    grad_accum_steps > 1: the batch runs as that many micro-batches (rows j, j+A, j+2A, ... form
    micro-batch j, so each device keeps its own rows) in a lax.scan that sums gradients and
    metrics; every micro-batch divides by the whole batch's normalizers (`loss_normalizers`), so
    the sums are the whole batch's loss, gradient and metrics (target_tokens: the batch's count).
    `micro_constraint` pins the micro-batches' sharding (rows over the batch axes)."""

    def loss_fn(params, frozen, batch, normalizers=None):
        return aura_loss(nnx.merge(graphdef, params, frozen), batch, normalizers)

    def grads_and_metrics(params, frozen, batch):
        if grad_accum_steps == 1:
            (_, metrics), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, frozen, batch)
            return grads, metrics
        model = nnx.merge(graphdef, params, frozen)
        norms = loss_normalizers(batch, model.placeholder_id, model.config.audio.patch_frames)
        a = grad_accum_steps
        micro = jax.tree.map(lambda x: x.reshape((x.shape[0] // a, a) + x.shape[1:]).swapaxes(0, 1), batch)
        micro_grad = jax.value_and_grad(loss_fn, has_aux=True)

        def body(carry, mb):
            if micro_constraint is not None:
                mb = micro_constraint(mb)
            (_, metrics), grads = micro_grad(params, frozen, mb, norms)
            return jax.tree.map(jnp.add, carry, (grads, metrics)), None

        zero = jax.eval_shape(lambda: micro_grad(params, frozen, jax.tree.map(lambda x: x[0], micro), norms))
        zero = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), (zero[1], zero[0][1]))
        (grads, metrics), _ = jax.lax.scan(body, zero, micro)
        return grads, metrics

    return grads_and_metrics


def make_train_step(graphdef, tx, schedule, *, grad_accum_steps: int = 1, micro_constraint=None):
    """The jitted step's body: gradients (`make_grad_fn`, accumulated over micro-batches if asked),
    then one optax update."""
    grads_and_metrics = make_grad_fn(graphdef, grad_accum_steps=grad_accum_steps, micro_constraint=micro_constraint)

    def train_step(state: TrainState, frozen, batch):
        grads, metrics = grads_and_metrics(state.params, frozen, batch)
        loss = metrics["loss"]
        # A non-finite loss must skip the update even if its gradient happens to be finite.
        grads = jax.tree.map(lambda g: jnp.where(jnp.isfinite(loss), g, jnp.nan), grads)
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        metrics = dict(metrics, grad_norm=optax.tree.norm(grads), lr=schedule(state.step),
                       skipped=1 - opt_state.last_finite.astype(jnp.int32),
                       skipped_total=opt_state.total_notfinite, consecutive_skips=opt_state.notfinite_count)
        return TrainState(params, opt_state, state.step + 1, state.rng), metrics

    return train_step


class Trainer:
    """Builds the sharded model and state from a config; `run()` trains to `num_steps`."""

    def __init__(self, config: Config, *, data=None, log=print, devices=None, abstract: bool = False,
                 curve=None):
        """devices: the mesh's devices (default: all of this process's backend); abstract=True builds
        no array at all: params, optimizer state and frozen weights are `jax.ShapeDtypeStruct`s with
        their shardings, read from config.json alone. `compiled_step` then lowers and compiles the
        very program `train` runs, for any devices (a TPU or GPU topology: `aura_jax.tools.aot`).

        curve: what `curve.every` evaluates, called as `curve(config, tokenizer, log)`; the entry
        points hand in `aura_jax.evaluate.curve.LearningCurve` (training does not import evaluation,
        which decodes with the student and so sits above it)."""
        self.config, self.log = config, log if is_main_process() else (lambda *a, **k: None)
        self.abstract = abstract
        if not abstract:
            _require_curve(config, curve)
        self.mesh = shd.make_mesh(config.mesh, devices)
        self.rules = config.sharding_rules
        dp = shd.data_parallel_size(self.mesh, self.rules)
        processes = 1 if abstract else jax.process_count()
        if config.batch_size % dp or config.batch_size % processes:
            raise ConfigError(f"batch_size={config.batch_size} must be divisible by the data-parallel size {dp} "
                              f"and the process count {processes}")
        micro = config.batch_size // config.grad_accum_steps
        if micro % dp:
            raise ConfigError(f"grad_accum_steps={config.grad_accum_steps}: the micro-batch of {micro} rows "
                              f"(batch_size {config.batch_size} / grad_accum_steps) must be divisible by the "
                              f"data-parallel size {dp}")
        model = load_aura(config, place=None if abstract else shd.placer(self.mesh, self.rules), abstract=abstract)
        store_frozen_dot_weights(model)  # bf16 dots: the same step without rounding the weights every time
        self.graphdef, params, frozen = nnx.split(model, Trainable, ...)
        frozen_shardings = shd.state_shardings(frozen, self.mesh, self.rules)
        param_shardings = shd.state_shardings(params, self.mesh, self.rules)
        total = config.steps if config.steps is not None else getattr(data, "num_steps", None)
        self.tx, self.schedule = build_optimizer(config.optim, total)
        replicated = NamedSharding(self.mesh, PartitionSpec())
        # Moments shard like their parameters; counters replicate.
        opt_shardings = optax.tree_map_params(self.tx, lambda _, sh: sh, jax.eval_shape(self.tx.init, params),
                                              param_shardings, transform_non_params=lambda _: replicated)
        if abstract:
            self.frozen = _abstract(frozen, frozen_shardings)
            params = _abstract(params, param_shardings)
            opt_state = _abstract(jax.eval_shape(self.tx.init, params), opt_shardings)
            key = jax.eval_shape(lambda: jax.random.PRNGKey(0))
            self.state = TrainState(params, opt_state, jax.ShapeDtypeStruct((), jnp.int32, sharding=replicated),
                                    jax.ShapeDtypeStruct(key.shape, key.dtype, sharding=replicated))
        else:
            self.frozen = jax.device_put(frozen, frozen_shardings)
            params = jax.device_put(params, param_shardings)
            opt_state = jax.jit(self.tx.init, out_shardings=opt_shardings)(params)
            self.state = TrainState(params, opt_state, jax.device_put(jnp.zeros((), jnp.int32), replicated),
                                    jax.device_put(jax.random.PRNGKey(config.seed), replicated))
        self.state_shardings = TrainState(param_shardings, opt_shardings, replicated, replicated)
        self.frozen_shardings = jax.tree.map(lambda x: x.sharding, self.frozen)
        self.step_fn = make_train_step(self.graphdef, self.tx, self.schedule,
                                       grad_accum_steps=config.grad_accum_steps, micro_constraint=self._micro_constraint)
        self._compiled: dict = {}
        self.data = data
        self.curve = None
        if config.curve.every and not abstract:
            if jax.process_count() > 1:
                raise ConfigError("curve.every: learning curves run in single-process training only")
            from aura_jax.tokenizer import ChatTokenizer

            tok = ChatTokenizer.from_pretrained(config.model.llm, audio_token=config.prompt.audio_token)
            self.curve = curve(config, tok, self.log)
        n_train = sum(x.size for x in jax.tree.leaves(params))
        n_frozen = sum(x.size for x in jax.tree.leaves(frozen))
        self.num_params = {"trainable": n_train, "frozen": n_frozen}
        accum = (f"; {config.grad_accum_steps} micro-batches of {micro} rows per step"
                 if config.grad_accum_steps > 1 else "")
        self.log(f"mesh {dict(self.mesh.shape)}; {n_train:,} trainable / {n_frozen:,} frozen parameters; "
                 f"teacher layers {model.teacher_layers}{accum}")

    def student(self):
        """The model as it is now (trainable params of the current state merged with the frozen weights)."""
        return nnx.merge(self.graphdef, self.state.params, self.frozen)

    def _micro_constraint(self, micro_batch: dict) -> dict:
        """A micro-batch's rows stay sharded over the batch axes (as the whole batch's were)."""
        return {k: jax.lax.with_sharding_constraint(v, shd.batch_sharding(self.mesh, self.rules, v.ndim))
                for k, v in micro_batch.items()}

    def batch_spec(self, batch: dict) -> dict:
        """Abstract global batch (ShapeDtypeStructs sharded as `global_batch` shards) of these host arrays'
        shapes, or of {key: (shape, dtype)} (`data.examples.batch_shapes`): what the AOT path lowers
        with instead of data."""
        def spec(shape, dtype):
            return jax.ShapeDtypeStruct(shape, jax.dtypes.canonicalize_dtype(dtype),
                                        sharding=shd.batch_sharding(self.mesh, self.rules, len(shape)))
        return {k: spec(*v) if isinstance(v, tuple) else spec(np.shape(v), np.asarray(v).dtype)
                for k, v in batch.items() if k not in HOST_ONLY}

    # -- compilation ---------------------------------------------------------
    def compiled_step(self, batch: dict):
        """The step compiled for this batch's shapes (ahead of running it, memory analysis printed)."""
        signature = tuple(sorted((k, v.shape, str(v.dtype)) for k, v in batch.items()))
        if signature not in self._compiled:
            batch_shardings = {k: v.sharding for k, v in batch.items()}
            jitted = jax.jit(self.step_fn, in_shardings=(self.state_shardings, self.frozen_shardings, batch_shardings),
                             out_shardings=(self.state_shardings, None), donate_argnums=(0,))
            start = time.time()
            with activation_constraint(shd.activation_constraints(self.mesh, self.rules)):
                lowered = jitted.lower(self.state, self.frozen, batch)
            compiled = lowered.compile()
            shapes = ", ".join(f"{k}{list(v.shape)}" for k, v in batch.items() if k in ("input_ids", "audio_features"))
            self.log(f"compiled train step for {shapes} in {time.time() - start:.1f} s; {memory_summary(compiled)}")
            self._compiled[signature] = compiled
        return self._compiled[signature]

    def train_step(self, local_batch: dict) -> tuple[dict, float]:
        """One optimizer step on this process's rows; returns (metrics on host, seconds excluding compilation)."""
        device_rows = {k: v for k, v in local_batch.items() if k not in HOST_ONLY}
        batch = shd.global_batch(device_rows, self.mesh, self.rules)
        step = self.compiled_step(batch)
        start = time.time()
        self.state, metrics = step(self.state, self.frozen, batch)
        metrics = jax.device_get(metrics)
        return metrics, time.time() - start

    # -- the loop ------------------------------------------------------------
    def run(self) -> dict:
        cfg = self.config
        run_dir = Path(cfg.run_dir)
        if is_main_process():
            run_dir.mkdir(parents=True, exist_ok=True)
        # Before the data iterator's threads start: tensorboardX imports torch, and a module imported
        # in one thread while a worker thread imports librosa/scipy (which probe torch) can break both.
        import tensorboardX  # noqa: F401
        data = self.data
        total = data.num_steps
        iterator = data.iterator()
        ckpt = Checkpointer(run_dir / "checkpoints", keep=cfg.keep_checkpoints)
        state, start = ckpt.restore_newest(self.state, iterator, fallback=cfg.checkpoint_fallback, log=self.log)
        if start:
            self.state = state
            self.log(f"resumed from {run_dir / 'checkpoints'} at step {start}")
        writer = MetricsWriter(run_dir, enabled=is_main_process())
        stop = _PreemptionFlag()
        summary = {"start_step": start, "steps": total, "preempted": False, "data": getattr(data, "stats", {}),
                   "run_dir": str(run_dir.absolute())}
        curve = self.curve
        if curve:
            curve.resume(start)
            if curve.plateaued():
                self.log(f"{run_dir}: stopped on a plateau of the learning curve at step {start} "
                         f"(curve.patience={cfg.curve.patience}); nothing to do")
                ckpt.close(), writer.close(), stop.restore()
                return dict(summary, final_step=start, plateau=True, last={})
        progress = _progress(start, total, enabled=is_main_process())
        step = start
        metrics = {}
        try:
            while step < total:
                local = next(iterator)
                metrics, dt = self.train_step(local)
                step += 1
                metrics = {k: _scalar(v) for k, v in metrics.items()}
                metrics.update(throughput(local, cfg, dt), step_time_s=dt, batch_id=batch_digest(local))
                if step % cfg.log_every == 0 or step == total:
                    writer.write(step, metrics)
                progress.update(1)
                progress.set_postfix({k: f"{metrics[k]:.4g}" for k in ("loss", "ce", "distill", "ctc", "text_kl",
                                                                       "examples_per_s", "tokens_per_s")
                                      if k in metrics})
                if metrics["consecutive_skips"] > cfg.optim.max_consecutive_skips:
                    raise FloatingPointError(f"{metrics['consecutive_skips']} non-finite steps in a row at step {step}; "
                                             f"the state is intact at the last checkpoint in {run_dir}")
                plateau = False
                if curve and curve.due(step, total):
                    record = curve.evaluate(step, self.student())
                    writer.scalars(step, {f"curve/{k}": v for k, v in record.items() if k.endswith("_wer")})
                    plateau = curve.plateaued()
                if step % cfg.checkpoint_every == 0 or step == total or plateau:
                    ckpt.save(step, self.state, iterator, force=True)
                if plateau:
                    summary["plateau"] = True
                    self.log(f"the {curve.first} WER has not improved by {cfg.curve.min_delta} points in "
                             f"{cfg.curve.patience} evaluations: stopping at step {step} (saved)")
                    break
                if stop.requested:
                    ckpt.save(step, self.state, iterator, force=True)
                    summary["preempted"] = True
                    self.log(f"SIGTERM: saved step {step} to {run_dir / 'checkpoints'}; exiting")
                    break
            summary.update(final_step=step, last=metrics if step > start else {})
        finally:
            progress.close()
            ckpt.close()
            writer.close()
            stop.restore()
        return summary


def _abstract(tree, shardings):
    """ShapeDtypeStructs of `tree` carrying `shardings` (same structure)."""
    return jax.tree.map(lambda x, sh: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sh), tree, shardings)


def batch_digest(local: dict) -> str:
    """A short fingerprint of which rows this batch holds (data order is checkable from metrics.jsonl)."""
    import hashlib

    from jax.experimental import multihost_utils

    ids = np.asarray(local.get("example_index", local["input_ids"]))
    if jax.process_count() > 1:  # fingerprint the global batch, not this process's rows
        ids = np.asarray(multihost_utils.process_allgather(ids, tiled=True))
    return hashlib.sha1(ids.astype(np.int64).tobytes()).hexdigest()[:12]  # (allgather returns int32)


def memory_summary(compiled) -> str:
    try:
        m = compiled.memory_analysis()
    except Exception:  # not every backend reports it
        m = None
    if m is None:
        return "memory analysis unavailable"
    gib = lambda b: f"{b / 2**30:.2f} GiB"
    return (f"memory per device: arguments {gib(m.argument_size_in_bytes)}, outputs {gib(m.output_size_in_bytes)}, "
            f"temporaries {gib(m.temp_size_in_bytes)}, aliased {gib(m.alias_size_in_bytes)}")


def throughput(local: dict, cfg: Config, seconds: float) -> dict:
    """examples/s and tokens/s (text and audio) of the global batch, from this process's share."""
    scale = jax.process_count()
    rows = len(local["input_ids"]) * scale
    text = int(np.asarray(local["attention_mask"]).sum()) * scale
    speech_rows = int((np.asarray(local["audio_valid_frames"]) > 0).sum()) * scale
    audio = speech_rows * local["audio_features"].shape[-1] // cfg.audio.patch_frames
    return {"examples_per_s": rows / seconds, "tokens_per_s": (text + audio) / seconds,
            "text_tokens_per_s": text / seconds, "audio_tokens_per_s": audio / seconds}


def _scalar(v):
    v = np.asarray(v)
    return v.item() if v.size == 1 else v.tolist()


def _progress(start: int, total: int, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=total, initial=start, disable=not enabled, desc="train", unit="step", dynamic_ncols=True)


class _PreemptionFlag:
    """SIGTERM (preemption) sets a flag; the loop saves a checkpoint and exits cleanly."""

    def __init__(self):
        self.requested = False
        self._previous = signal.signal(signal.SIGTERM, self._handle)

    def _handle(self, signum, frame):
        self.requested = True

    def restore(self):
        signal.signal(signal.SIGTERM, self._previous)


def train(config: Config, data=None, curve=None) -> dict:
    """Train from `config`, resuming from run_dir's newest checkpoint that restores.

    Before anything expensive (the audio scan, loading models, compiling): paths are resolved,
    every input must exist and every output directory be writable, and a resumed run's config
    must agree with the one it started with (`aura_jax.training.preflight`). A run already at `steps`
    returns at once ({"complete": True}). `curve`: as for `Trainer`."""
    _require_curve(config, curve)
    config = preflight.resolve_paths(config)
    preflight.check_inputs(config)
    preflight.check_outputs(config)
    run_dir = Path(config.run_dir)
    latest = _latest_step(run_dir)
    changes = preflight.check_resume(_saved_config(run_dir), config, run_dir) if latest else {}
    if config.steps is not None and latest:
        _check_steps(config.steps, latest, run_dir)
        if latest >= config.steps:
            return _complete(run_dir, latest, config.steps)
    if is_main_process():
        _record_config(run_dir, config, latest, changes)
    ensure_random_checkpoints(config)
    if data is None:
        from aura_jax.data.pipeline import TrainData
        from aura_jax.tokenizer import ChatTokenizer

        tokenizer = ChatTokenizer.from_pretrained(config.model.llm, audio_token=config.prompt.audio_token)
        data = TrainData(config, tokenizer, process_index=jax.process_index(), process_count=jax.process_count())
    if latest and config.steps is None:  # an epochs-based run: its length is known once the data is
        _check_steps(data.num_steps, latest, run_dir, key=f"epochs={config.epochs} ({data.num_steps} steps)")
        if latest >= data.num_steps:
            return _complete(run_dir, latest, data.num_steps)
    trainer = Trainer(config, data=data, curve=curve)
    return trainer.run()


def _require_curve(config: Config, curve) -> None:
    if config.curve.every and curve is None:
        raise ConfigError(f"curve.every={config.curve.every}: no learning-curve evaluator was handed in; "
                          f"`aura-jax train` hands one in, from Python pass "
                          f"curve=aura_jax.evaluate.curve.LearningCurve (or set curve.every=0)")


def _latest_step(run_dir: Path) -> int:
    """The newest checkpoint step in run_dir (0: none), without opening orbax."""
    steps = [int(p.name) for p in (run_dir / "checkpoints").glob("*") if p.name.isdigit() and p.is_dir()]
    return max(steps, default=0)


def _saved_config(run_dir: Path) -> dict:
    """The run's config.yaml as written at its start, its paths resolved as they were then."""
    from aura_jax.config import from_dict

    path = run_dir / "config.yaml"
    if not path.exists():
        raise ConfigError(f"{run_dir}: has checkpoints but no config.yaml; cannot check that this config is "
                          f"the run's (restore config.yaml, or use a new run_dir)")
    try:
        saved = from_dict(Config, yaml.safe_load(path.read_text()))
    except (ConfigError, yaml.YAMLError) as e:
        raise ConfigError(f"{path}: unreadable ({e})") from None
    return preflight.resolve_paths(saved).to_dict()


def _check_steps(steps: int, latest: int, run_dir: Path, key: str = "") -> None:
    if steps < latest:
        raise ConfigError(f"{key or f'steps={steps}'} is below the run's latest checkpoint, step {latest} in "
                          f"{run_dir / 'checkpoints'}: a run cannot go back. Raise steps to continue it, or use "
                          f"`aura-jax export/eval --step` for an earlier checkpoint")


def _complete(run_dir: Path, latest: int, steps: int) -> dict:
    print(f"{run_dir}: already complete (step {latest} of {steps}); raise steps=N to train further", flush=True)
    return {"complete": True, "final_step": latest, "steps": steps, "start_step": latest, "preempted": False,
            "run_dir": str(run_dir)}


def _record_config(run_dir: Path, config: Config, latest: int, changes: dict) -> None:
    """config.yaml is written when a run starts and never rewritten while it has checkpoints;
    each resume's accepted changes are appended to resumes.jsonl."""
    if not latest:
        (run_dir / "config.yaml").write_text(yaml.safe_dump(config.to_dict(), sort_keys=False))
        return
    import json

    record = {"time": time.strftime("%Y-%m-%dT%H:%M:%S"), "from_step": latest,
              "changes": {k: {"was": a, "now": b} for k, (a, b) in changes.items()}}
    with open(run_dir / "resumes.jsonl", "a") as f:
        f.write(json.dumps(record, default=str) + "\n")
    if changes:
        print("resuming with changes: " + "; ".join(f"{k}: {a!r} → {b!r}" for k, (a, b) in changes.items()),
              flush=True)
