"""NNX models: Qwen2 (student backbone), Whisper encoder (teacher) and decoder, LoRA, AuRA.

Plain modules and math: no file I/O. Loading Hugging Face directories is `aura_jax.hf`."""
