"""aura_jax: AuRA (audio understanding internalized into an LLM as LoRA) in JAX/Flax NNX."""

__version__ = "0.1.0"
