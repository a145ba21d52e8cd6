"""The PyTorch inference side of an exported AuRA model (optional `convert` extra).

`AuraSpeechLM.from_pretrained(OUT)` loads what `aura-jax export` wrote: a merged
Hugging Face Qwen2 (or base + PEFT adapter) and the small audio embedding.
torch is imported only when a name below is first used, so `import aura_jax`
(and `import aura_jax.torch`) never needs torch."""

__all__ = ["AuraSpeechLM", "AudioPatchEmbed"]


def __getattr__(name):
    if name in __all__:
        import importlib

        return getattr(importlib.import_module("aura_jax.torch.model"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
