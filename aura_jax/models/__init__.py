"""NNX models: Qwen2 (student backbone), Whisper encoder (teacher), LoRA, AuRA."""


def from_pretrained(path, dtype="float32", **kwargs):
    """Load a local Hugging Face directory (Qwen2 → Qwen2ForCausalLM, Whisper → WhisperEncoder)."""
    from aura_jax.hf import from_pretrained as _from_pretrained

    return _from_pretrained(path, dtype, **kwargs)
