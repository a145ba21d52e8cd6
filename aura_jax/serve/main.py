"""`aura-jax serve MODEL [--cascade WHISPER LLM | --no-cascade]`: the voice page and its endpoints on 127.0.0.1;
the cascade beside AuRA is the Whisper and LLM that MODEL records unless other directories are passed."""

from __future__ import annotations

import ipaddress
import logging
import sys

LOOPBACK = ("127.0.0.1", "localhost", "::1")


def add_arguments(p) -> None:
    from aura_jax.serve.app import Limits

    d = Limits()
    p.add_argument("model", help="an aura-jax export (PyTorch: runs/demo/export/merged) or a training run directory "
                   "(JAX: runs/demo/run)")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--cascade", nargs=2, metavar=("WHISPER", "LLM"), default=None,
                       help="the cascade shown beside AuRA: Whisper then the LLM (Hugging Face directories); default: "
                       "the teacher and LLM that MODEL was trained with (its config.yaml, or its export's records)")
    which.add_argument("--no-cascade", action="store_true", help="serve AuRA alone")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only; "
                   "anything else serves the network and says so)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--max-audio-seconds", type=float, default=d.max_audio_seconds,
                   help="audio per question (at most the model's window)")
    p.add_argument("--max-message-bytes", type=int, default=d.max_message_bytes,
                   help="one WebSocket message or HTTP body")
    p.add_argument("--max-streams", type=int, default=d.max_streams, help="questions in flight at once")
    p.add_argument("--max-new-tokens", type=int, default=64, help="answer length, both systems")
    p.add_argument("--chunk-patches", type=int, default=5, help="audio patches per prefill while the person speaks")
    p.add_argument("--padded", action="store_true", help="pad the audio after the speech as training did (the first "
                   "token then waits for the padding; see README, 'Streaming speech input')")
    p.add_argument("--record", default=None, metavar="DIR",
                   help="keep each question's audio (WAV) and answers (JSON) in DIR; by default nothing is written")
    p.add_argument("--allow-origin", action="append", default=[], metavar="URL",
                   help="another page origin allowed to open the WebSocket (default: this server's own page only)")
    p.add_argument("--no-warmup", action="store_true", help="skip the silent warm-up question at start")


def build_server(args):
    from aura_jax.serve.answerers import Cascade, load_aura, recorded_cascade
    from aura_jax.serve.app import Limits, Server, cascade_failure

    for name in ("max_audio_seconds", "max_message_bytes", "max_streams", "max_new_tokens", "chunk_patches"):
        if getattr(args, name) <= 0:
            raise SystemExit(f"aura-jax serve: --{name.replace('_', '-')} must be positive")
    pair = args.cascade
    if pair is None and not args.no_cascade:
        try:  # before loading AuRA: a missing directory fails in a second, not after the model loads
            pair = recorded_cascade(args.model)
        except FileNotFoundError as e:
            raise SystemExit(f"aura-jax serve: {e}") from None
    aura = load_aura(args.model, max_new_tokens=args.max_new_tokens, chunk_patches=args.chunk_patches,
                     padded=args.padded)
    cascade, cascade_error = None, None
    if pair:
        try:
            cascade = Cascade(*pair, max_new_tokens=args.max_new_tokens)
        except Exception as e:  # noqa: BLE001 - any failure: AuRA is served alone, and that is said in one line
            cascade_error = cascade_failure(pair, e)
            print(f"aura-jax serve: {cascade_error}", file=sys.stderr)
    limits = Limits(args.max_audio_seconds, args.max_message_bytes, args.max_streams)
    return Server(aura, cascade, limits, record_dir=args.record, allow_origins=tuple(args.allow_origin),
                  cascade_error=cascade_error)


def is_loopback(host: str) -> bool:
    if host in LOOPBACK:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def main(args) -> int:
    import uvicorn

    from aura_jax.serve.routes import make_app

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if not is_loopback(args.host):
        print(f"WARNING: serving on {args.host}: anyone who can reach this address can send audio to the model "
              "and read its answers; there is no authentication. Use the default 127.0.0.1 for this machine only.",
              file=sys.stderr)
    server = build_server(args)
    if not args.no_warmup:
        server.warm_up()
        if server.cascade_error:
            print(f"aura-jax serve: {server.cascade_error}", file=sys.stderr)
    print(f"{server.aura.description}" + (f"; cascade: {server.cascade.description}" if server.cascade else ""))
    print(f"open http://{'[' + args.host + ']' if ':' in args.host else args.host}:{args.port}/ "
          "(WebSocket /v1/stream, POST /v1/chat/completions, POST /v1/audio/transcriptions, POST /v1/audio/answer)")
    uvicorn.run(make_app(server), host=args.host, port=args.port, ws_max_size=args.max_message_bytes + 4096,
                log_level="info")
    return 0
