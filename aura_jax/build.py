"""Assemble an AuRA model from a config: load the frozen LLM and the truncated
teacher from their Hugging Face directories, resolve the audio placeholder
token, attach LoRA, the patch embedding and the heads."""

from __future__ import annotations

from pathlib import Path

from flax import nnx

from aura_jax import distill
from aura_jax.config import Config, ConfigError
from aura_jax.hf import CheckpointError, WhisperEncoderConfig, from_pretrained, read_config
from aura_jax.models.aura import AuraModel
from aura_jax.models.layers import set_dot_dtype


def placeholder_token_id(llm_dir: str | Path, token: str, vocab_size: int) -> int:
    """Id of the audio placeholder in the LLM's tokenizer; a token the tokenizer lacks
    gets the next free id (Qwen2.5's embedding table has unused rows for this; the
    row is never read because audio tokens replace the placeholder)."""
    from tokenizers import Tokenizer

    path = Path(llm_dir) / "tokenizer.json"
    if not path.exists():
        raise CheckpointError(f"{path}: missing (the LLM directory needs its tokenizer)")
    tok = Tokenizer.from_file(str(path))
    token_id = tok.token_to_id(token)
    if token_id is None:
        token_id = tok.get_vocab_size(with_added_tokens=True)
    if token_id >= vocab_size:
        raise ConfigError(f"prompt.audio_token {token!r}: no free embedding row for it "
                          f"(tokenizer size {token_id}, vocab_size {vocab_size})")
    return token_id


def teacher_depth(config: Config) -> int:
    """The deepest teacher layer any student layer is paired with: all the teacher we run."""
    hf = read_config(config.model.teacher)
    layers = WhisperEncoderConfig.from_hf(hf).encoder_layers
    try:
        schedule = distill.teacher_layer_schedule(config.distill.teacher_layers, config.lora.num_layers, layers)
    except ValueError as e:
        raise ConfigError(str(e)) from None
    return max(schedule)


def ensure_random_checkpoints(config: Config) -> None:
    """model.random_init=tiny: build tiny random HF checkpoints where none exist yet (needs transformers)."""
    if config.model.random_init != "tiny":
        return
    from aura_jax import random_checkpoints as rc

    if not (Path(config.model.llm) / "config.json").exists():
        rc.make_qwen2(config.model.llm)
    if config.model.teacher and not (Path(config.model.teacher) / "config.json").exists():
        rc.make_whisper(config.model.teacher, num_mel_bins=config.audio.n_mels)


def load_aura(config: Config, *, place=None, abstract: bool = False) -> AuraModel:
    """The AuRA model described by `config`, frozen weights loaded from `model.llm` / `model.teacher`.

    abstract=True reads only the directories' config.json and tokenizer: every array of the model
    (frozen and trainable) is a `jax.ShapeDtypeStruct` with its logical axes, nothing is allocated
    (ahead-of-time compilation for hardware that is not here, `aura_jax.tools.aot`)."""
    if not config.model.llm:
        raise ConfigError("model.llm: set it to a Hugging Face Qwen2 directory")
    ensure_random_checkpoints(config)
    llm = from_pretrained(config.model.llm, config.model.param_dtype, compute_dtype=config.model.compute_dtype,
                          place=place, weights=not abstract)
    if llm.config.num_hidden_layers < config.lora.num_layers:
        raise ConfigError(f"lora.num_layers={config.lora.num_layers} is larger than the LLM's "
                          f"{llm.config.num_hidden_layers} layers ({config.model.llm})")
    teacher = None
    if config.loss.distill_weight > 0:
        if not config.model.teacher:
            raise ConfigError("model.teacher: set it to a Hugging Face Whisper directory (or loss.distill_weight=0)")
        # Only the layers up to the deepest paired one are built (model.truncate_teacher=false loads
        # all; XLA prunes the unused ones from the step anyway, so that costs memory, not FLOPs).
        depth = teacher_depth(config) if config.model.truncate_teacher else None
        teacher = from_pretrained(config.model.teacher, config.model.param_dtype, num_layers=depth,
                                  compute_dtype=config.model.compute_dtype, place=place, weights=not abstract)
    set_dot_dtype(llm, config.model.dot_dtype, store=config.model.store_dot_weights)
    if teacher is not None:
        set_dot_dtype(teacher, config.model.dot_dtype, store=config.model.store_dot_weights)
    token_id = placeholder_token_id(config.model.llm, config.prompt.audio_token, llm.config.vocab_size)
    build = lambda llm, teacher: AuraModel(llm, teacher, config, placeholder_id=token_id, rngs=nnx.Rngs(config.seed))
    try:
        return nnx.eval_shape(build, llm, teacher) if abstract else build(llm, teacher)
    except ValueError as e:
        raise ConfigError(str(e)) from None
