"""`aura-jax serve`: a trained AuRA model (and the cascade beside it) answering spoken questions over a
WebSocket stream, OpenAI-style chat-completions and transcription endpoints and a plain audio POST, with a
local page that streams the microphone into it (docs/SERVE.md).

    audio_input   bytes from a client (a file of any common format and rate, or PCM chunks) → 16 kHz mono
                  float32 samples, or one clear error
    answerers     the models: AuRA (an export in PyTorch, or a run directory in JAX) and the cascade
    app           the server: limits, one utterance per stream
    routes        the Starlette app: the endpoints and their wire formats
    main          the command line (uvicorn)
"""
