"""`aura-jax serve`: a trained AuRA model (and the cascade beside it) answering spoken questions over a
WebSocket stream, an OpenAI-style chat-completions endpoint and a plain WAV POST, with a local page
that streams the microphone into it (docs/SERVE.md).

    audio_input   bytes from a client → 16 kHz mono float32 samples, or one clear error
    answerers     the models: AuRA (an export in PyTorch, or a run directory in JAX) and the cascade
    app           the Starlette app: routes, limits, one utterance per stream
    main          the command line (uvicorn)
"""
