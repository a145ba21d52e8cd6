"""The PyTorch inference side of an exported AuRA model (optional `convert` extra).

`AuraSpeechLM.from_pretrained(OUT)` loads what `aura-jax export` wrote: a merged
Hugging Face Qwen2 (or base + PEFT adapter) and the small audio embedding.
torch is imported only when this package is used."""


def __getattr__(name):
    if name in ("AuraSpeechLM", "AudioPatchEmbed"):
        from aura_jax.torch import model

        return getattr(model, name)
    raise AttributeError(name)
