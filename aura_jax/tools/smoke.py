"""`aura-jax smoke`: build tiny random Qwen2/Whisper checkpoints
locally, synthesize two spoken prompts, and run one AuRA forward + loss,
printing the loss terms — a one-minute check of an install (the full miniature is
`aura-jax demo`)."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np


def ensure_tiny_checkpoints(workdir: str | Path) -> tuple[Path, Path]:
    """Tiny random HF checkpoints under workdir (made once, reused)."""
    from aura_jax import random_checkpoints as rc

    workdir = Path(workdir)
    llm, teacher = workdir / "tiny-qwen2", workdir / "tiny-whisper"
    if not (llm / "config.json").exists():
        rc.make_qwen2(llm)
    if not (teacher / "config.json").exists():
        rc.make_whisper(teacher)
    return llm, teacher


def demo_batch(llm_dir: Path, config) -> dict:
    """Two speech rows (synthesized) and one text-only row, tokenized with the chat template."""
    import jax.numpy as jnp
    from tokenizers import Tokenizer

    from aura_jax.audio import log_mel_with_valid_frames
    from aura_jax.synth import synthesize

    tok = Tokenizer.from_file(str(llm_dir / "tokenizer.json"))
    p = config.prompt
    rows = [(f"{p.audio_token} {p.asr_instruction}", "one two three", True),
            (f"{p.audio_token} {p.asr_instruction}", "the quick brown fox", True),
            ("What is the capital of France?", "Paris", False)]
    ids, targets, feats, valid = [], [], [], []
    for prompt, answer, speech in rows:
        head = tok.encode(f"<|im_start|>system\n{p.system}<|im_end|>\n<|im_start|>user\n{prompt}<|im_end|>\n"
                          "<|im_start|>assistant\n").ids
        tail = tok.encode(f"{answer}<|im_end|>").ids
        ids.append(head + tail)
        targets.append([False] * len(head) + [True] * len(tail))
        wave = synthesize(answer) if speech else np.zeros(1600, np.float32)
        f, v = log_mel_with_valid_frames(wave, 16000, config.audio.n_mels)
        feats.append(f[:, :config.audio.num_frames])
        valid.append(v if speech else 0)
    t = max(map(len, ids))
    pad = lambda rows, fill: np.array([r + [fill] * (t - len(r)) for r in rows])
    return dict(input_ids=jnp.asarray(pad(ids, 0), jnp.int32),
                attention_mask=jnp.asarray(pad([[True] * len(r) for r in ids], False)),
                loss_mask=jnp.asarray(pad(targets, False)),
                audio_features=jnp.asarray(np.stack(feats)),
                audio_valid_frames=jnp.asarray(np.array(valid), jnp.int32))


def run_smoke(workdir: str | Path = "runs/demo", overrides: list[str] = ()) -> dict:
    import jax
    from flax import nnx

    from aura_jax.build import load_aura
    from aura_jax.config import load_config
    from aura_jax.models.layers import Trainable
    from aura_jax.training.loss import aura_loss

    start = time.time()
    llm, teacher = ensure_tiny_checkpoints(workdir)
    config = load_config(None, [f"model.llm={llm}", f"model.teacher={teacher}", "lora.num_layers=2",
                                "lora.rank=8", *overrides])
    model = load_aura(config)
    batch = demo_batch(llm, config)
    trainable = sum(x.size for x in jax.tree.leaves(nnx.state(model, Trainable)))
    frozen = sum(x.size for x in jax.tree.leaves(nnx.state(model, nnx.Not(Trainable))))
    print(f"AuRA tiny: {trainable:,} trainable / {frozen:,} frozen parameters; "
          f"K={config.lora.num_layers}, r={config.lora.rank}, N={config.audio.num_audio_tokens} audio tokens, "
          f"teacher layers {model.teacher_layers}")
    graphdef, state = nnx.split(model)
    loss_fn = jax.jit(lambda state, batch: aura_loss(nnx.merge(graphdef, state), batch))
    loss, metrics = loss_fn(state, batch)
    metrics = {k: float(v) for k, v in metrics.items()}
    print("  ".join(f"{k}={v:.4f}" for k, v in metrics.items()))
    print(f"done in {time.time() - start:.1f} s")
    return metrics
