"""The server's endpoints (`app` lists them); each turns a request into an `Utterance` and its events into the
wire format: WebSocket JSON, OpenAI chat-completion (chunks) or transcription, or one JSON answer. Audio of
every way in goes through `audio_input` (files: `decode_file`, in a worker thread; streams: `PcmStream`)."""

from __future__ import annotations

import base64
import binascii
import json
import time
import uuid

import anyio

from starlette.formparsers import MultiPartException, MultiPartParser
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, PlainTextResponse, StreamingResponse
from starlette.websockets import WebSocket, WebSocketDisconnect

from aura_jax.inference.streaming import StreamError
from aura_jax.serve.app import STATIC, ClientError, Utterance, log, step
from aura_jax.serve.audio_input import (
    PCM_FORMATS,
    SAMPLING_RATE,
    STREAM_CHANNELS,
    STREAM_RATES,
    AudioInputError,
    PcmStream,
    decode_file,
)

CHAT_AUDIO_FORMATS = ("wav", "mp3", "flac", "ogg")  # input_audio.format: OpenAI's wav and mp3, and what else we read
RESPONSE_FORMATS = ("json", "text", "verbose_json")

CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; media-src 'self' blob:; "
       "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'")


class SecurityHeaders:
    """Every HTTP response: the page may load nothing from elsewhere and may not be framed."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        async def send_with_headers(message):
            if message["type"] == "http.response.start":
                message.setdefault("headers", [])
                message["headers"] += [(b"content-security-policy", CSP.encode()), (b"x-frame-options", b"DENY"),
                                       (b"x-content-type-options", b"nosniff")]
            await send(message)

        await self.app(scope, receive, send_with_headers)


def make_app(server):
    """The Starlette app of a `Server`: the page, the three ways in, /health."""
    from starlette.applications import Starlette
    from starlette.middleware import Middleware
    from starlette.routing import Mount, Route, WebSocketRoute
    from starlette.staticfiles import StaticFiles

    app = Starlette(routes=[
        Route("/", page), Route("/health", health),
        Route("/v1/chat/completions", chat_completions, methods=["POST"]),
        Route("/v1/audio/transcriptions", transcriptions, methods=["POST"]),
        Route("/v1/audio/answer", audio_answer, methods=["POST"]),
        WebSocketRoute("/v1/stream", stream),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ], middleware=[Middleware(SecurityHeaders)])
    app.state.server = server
    return app


def _server(request):
    return request.app.state.server


async def page(request: Request):
    return FileResponse(STATIC / "index.html")


async def health(request: Request):
    return JSONResponse({"status": "ok", **_server(request).info()})


# -- HTTP ----------------------------------------------------------------------
def openai_error(e: ClientError) -> JSONResponse:
    kind = "server_busy" if e.status == 503 else "invalid_request_error"
    return JSONResponse({"error": {"message": str(e), "type": kind, "param": e.param, "code": None}},
                        status_code=e.status)


async def read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise ClientError(f"the request body is {int(declared)} bytes; the limit is {limit} (--max-message-bytes)",
                          status=413)
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise ClientError(f"the request body exceeds the limit of {limit} bytes (--max-message-bytes)", status=413)
    return bytes(body)


def b64_audio(data) -> bytes:
    if not isinstance(data, str):
        raise ClientError("input_audio.data must be a base64 string", param="messages")
    try:
        return base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise ClientError("input_audio.data is not valid base64", param="messages") from None


async def decode(raw: bytes, server, param: str | None = None):
    """A file's 16 kHz mono samples, decoded in a worker thread (an MP3 of 30 s takes a while); bad audio
    is a ClientError: 400, or 413 over --max-audio-seconds."""
    try:
        return await anyio.to_thread.run_sync(decode_file, raw, server.max_audio_seconds)
    except AudioInputError as e:
        raise ClientError(str(e), status=e.status, param=param) from None


def parse_chat(body: bytes, server) -> tuple[str, str, bytes, bool]:
    """(model, prompt, the audio file's bytes, stream) of a chat-completions request; ClientError for any
    other shape.
    model: "aura", "cascade", or "both" (two choices: index 0 AuRA, index 1 the cascade)."""
    try:
        req = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ClientError(f"the body is not JSON: {e}") from None
    if not isinstance(req, dict):
        raise ClientError("the body must be a JSON object")
    model = req.get("model", "aura")
    if model not in (None, "aura", "cascade", "both"):
        raise ClientError(f"model {model!r}: this server answers as 'aura', 'cascade' or 'both'", status=404,
                          param="model")
    system = model or "aura"
    server.systems(system != "aura")
    messages = req.get("messages")
    if not isinstance(messages, list) or not messages or not all(isinstance(m, dict) for m in messages):
        raise ClientError("'messages' must be a non-empty list of message objects", param="messages")
    user = [m for m in messages if m.get("role") == "user"]
    if not user:
        raise ClientError("'messages' holds no user message", param="messages")
    content = user[-1].get("content")
    parts = [{"type": "text", "text": content}] if isinstance(content, str) else content
    if not isinstance(parts, list) or not all(isinstance(p, dict) for p in parts):
        raise ClientError("the user message's content must be a string or a list of content parts", param="messages")
    audio = [p for p in parts if p.get("type") == "input_audio"]
    if len(audio) != 1:
        raise ClientError(f"the last user message holds {len(audio)} input_audio parts; this server takes exactly one",
                          param="messages")
    spec = audio[0].get("input_audio")
    if not isinstance(spec, dict) or spec.get("format", "wav") not in CHAT_AUDIO_FORMATS:
        raise ClientError("input_audio must be {\"data\": base64, \"format\": one of "
                          f"{', '.join(CHAT_AUDIO_FORMATS)}}}", param="messages")
    unknown = {p.get("type") for p in parts} - {"text", "input_audio"}
    if unknown:
        raise ClientError(f"content parts of type {sorted(map(str, unknown))}: this server reads text and input_audio",
                          param="messages")
    texts = [p.get("text") for p in parts if p.get("type") == "text"]
    if not all(isinstance(t, str) for t in texts):
        raise ClientError("a text part's 'text' must be a string", param="messages")
    prompt = server.check_prompt(" ".join(t.strip() for t in texts if t.strip()) or None)
    if not isinstance(req.get("stream", False), bool):
        raise ClientError("'stream' must be true or false", param="stream")
    return system, prompt, b64_audio(spec.get("data")), req.get("stream", False)


async def answer_events(server, prompt: str, systems, wave):
    """Every event of one utterance heard from a whole file (an async generator)."""
    server.acquire()
    utt = None
    try:
        utt = await _thread(Utterance, server, prompt, systems)
        await _thread(utt.feed, wave)
        events = utt.events(time.perf_counter())  # the file is all there: its end is the end of speech
        try:
            while (event := await step(events)) is not None:
                yield event
        finally:
            events.close()
    finally:
        if utt is not None:
            utt.close()
        server.release()


async def _thread(fn, *args):
    try:
        return await anyio.to_thread.run_sync(fn, *args)
    except (AudioInputError, StreamError) as e:
        raise ClientError(str(e)) from None


async def chat_completions(request: Request):
    server = _server(request)
    try:
        model, prompt, raw, stream = parse_chat(await read_body(request, server.limits.max_message_bytes), server)
        wave = await decode(raw, server, param="messages")
        server.acquire()  # checked now, so a busy server answers 503 before a stream begins
        server.release()
    except ClientError as e:
        return openai_error(e)
    systems = ("aura", "cascade") if model == "both" else (model,)
    cid, created = f"chatcmpl-{uuid.uuid4().hex}", int(time.time())
    events = answer_events(server, prompt, systems, wave)

    def chunk(system: str, delta: dict, finish=None, **extra) -> str:
        body = {"id": cid, "object": "chat.completion.chunk", "created": created, "model": model,
                "choices": [{"index": systems.index(system), "delta": delta, "finish_reason": finish}], **extra}
        return f"data: {json.dumps(body)}\n\n"

    if stream:
        async def sse():
            for system in systems:
                yield chunk(system, {"role": "assistant", "content": ""})
            try:
                async for ev in events:
                    if ev["type"] == "token":
                        yield chunk(ev["system"], {"content": ev["text"]})
                    elif ev["type"] == "answer":
                        yield chunk(ev["system"], {}, ev["finish_reason"], timing=ev["timing"])
            except ClientError as e:
                yield f"data: {json.dumps({'error': {'message': str(e), 'type': 'invalid_request_error'}})}\n\n"
            yield "data: [DONE]\n\n"

        return StreamingResponse(sse(), media_type="text/event-stream", headers={"cache-control": "no-store"})
    try:
        answers = {ev["system"]: ev async for ev in events if ev["type"] == "answer"}
    except ClientError as e:
        return openai_error(e)
    choices = [{"index": i, "message": {"role": "assistant", "content": answers[s]["text"]},
                "finish_reason": answers[s]["finish_reason"]} for i, s in enumerate(systems)]
    timing = {s: answers[s]["timing"] for s in systems}
    extra = {"transcript": answers["cascade"]["transcript"]} if "cascade" in answers else {}
    return JSONResponse({
        "id": cid, "object": "chat.completion", "created": created, "model": model, "choices": choices,
        "usage": {"completion_tokens": sum(answers[s]["timing"]["tokens"] for s in systems)},
        "timing": timing[systems[0]] if len(systems) == 1 else timing, **extra})


async def audio_answer(request: Request):
    """An audio file as the body; ?prompt=...&cascade=0 → {"aura": {...}, "cascade": {...}} (the cascade when
    served, unless 0)."""
    server = _server(request)
    try:
        want = request.query_params.get("cascade", "1" if server.cascade else "0") not in ("0", "false", "")
        systems = server.systems(want)
        prompt = server.check_prompt(request.query_params.get("prompt"))
        wave = await decode(await read_body(request, server.limits.max_message_bytes), server)
        out = {ev["system"]: {k: v for k, v in ev.items() if k not in ("type", "system")}
               async for ev in answer_events(server, prompt, systems, wave) if ev["type"] == "answer"}
    except ClientError as e:
        return JSONResponse({"error": str(e)}, status_code=e.status)
    return JSONResponse(out)


async def transcriptions(request: Request):
    """OpenAI's transcription request: a multipart form with `file`, `model` ("aura": AuRA asked for a
    transcript as eval asks it; "cascade": the cascade's Whisper) and `response_format` (json, text,
    verbose_json: with the duration and timing). Its other fields (language, prompt, temperature) are
    accepted and do not change the greedy transcript."""
    server = _server(request)
    try:
        form = await read_form(request, server.limits.max_message_bytes)
        model, fmt, upload = form.get("model", "aura"), form.get("response_format", "json"), form.get("file")
        if model not in ("aura", "cascade"):
            raise ClientError(f"model {model!r}: this server transcribes as 'aura' or 'cascade'", status=404,
                              param="model")
        server.systems(model == "cascade")
        if fmt not in RESPONSE_FORMATS:
            raise ClientError(f"response_format {fmt!r}: this server writes {', '.join(RESPONSE_FORMATS)}",
                              param="response_format")
        if form.get("stream", "false") != "false":
            raise ClientError("this server does not stream transcriptions; leave 'stream' out", param="stream")
        if not hasattr(upload, "read"):
            raise ClientError("the form has no file field 'file' (the audio)", param="file")
        wave = await decode(await upload.read(), server, param="file")
        text, timing = await transcribe(server, model, wave)
    except ClientError as e:
        return openai_error(e)
    if fmt == "text":
        return PlainTextResponse(text)
    if fmt == "json":
        return JSONResponse({"text": text})
    return JSONResponse({"task": "transcribe", "language": "english", "duration": round(wave.size / SAMPLING_RATE, 3),
                         "text": text, "model": model, "timing": timing})


class InMemoryMultiPart(MultiPartParser):
    """Starlette's multipart parser keeping the file in memory (it spools files over 1 MiB to disk): the body
    is bounded by --max-message-bytes already, and nothing a client sends is written to disk."""

    spool_max_size = 2**62


async def read_form(request: Request, limit: int):
    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
        raise ClientError("send the audio as multipart/form-data with the file in a field 'file', as OpenAI's API "
                          "takes it", param="file")
    body = await read_body(request, limit)

    async def once():
        yield body

    try:
        return await InMemoryMultiPart(request.headers, once(), max_files=1, max_fields=16,
                                       max_part_size=64 * 1024).parse()
    except MultiPartException as e:
        raise ClientError(f"the multipart form: {e}") from None


async def transcribe(server, model: str, wave) -> tuple[str, dict]:
    """(transcript, timing): AuRA's answer to its transcription prompt, or the cascade's Whisper alone."""
    if model == "aura":
        async for ev in answer_events(server, server.aura.asr_prompt, ("aura",), wave):
            if ev["type"] == "answer":
                answer = ev
        return answer["text"], answer["timing"]
    server.acquire()
    try:
        start = time.perf_counter()
        text = await anyio.to_thread.run_sync(server.cascade.transcribe, wave)
    finally:
        server.release()
    return text, {"transcribe_s": round(time.perf_counter() - start, 4),
                  "audio_s": round(wave.size / SAMPLING_RATE, 3)}


# -- WebSocket -------------------------------------------------------------------
async def stream(ws: WebSocket):
    """One socket, any number of utterances in turn: start → audio chunks → end → events → done."""
    server = _server(ws)
    origin = ws.headers.get("origin")
    if origin and not _same_origin(origin, ws.headers.get("host", "")) and origin not in server.allow_origins:
        await ws.close(code=1008)  # another site's page may not talk to this server through the visitor's browser
        return
    await ws.accept()
    utt, pcm, held = None, None, False
    try:
        while True:
            msg = await ws.receive()
            if msg["type"] == "websocket.disconnect":
                return
            if msg.get("bytes") is not None:
                data = msg["bytes"]
                if len(data) > server.limits.max_message_bytes:
                    raise ClientError(f"a message of {len(data)} bytes; the limit is "
                                      f"{server.limits.max_message_bytes} (--max-message-bytes)", code=1009)
                if utt is None:
                    raise ClientError("audio before 'start': send {\"type\": \"start\", \"sample_rate\": 16000} first")
                await _thread(_feed, utt, pcm, data)  # resampled and into the KV cache while the person speaks
                continue
            req = _json_message(msg.get("text"))
            kind = req.get("type")
            if kind == "start":
                if utt is not None:
                    raise ClientError("'start' again before 'end'")
                (fmt, rate, channels), systems, prompt = _start_fields(req, server)
                server.acquire()
                held = True
                utt, pcm = await _thread(Utterance, server, prompt, systems), PcmStream(fmt, rate, channels)
                await ws.send_json({"type": "ready", "sample_rate": rate, "channels": channels, "format": fmt,
                                    "heard_at": SAMPLING_RATE, "max_audio_seconds": server.max_audio_seconds,
                                    "systems": list(systems)})
            elif kind == "end":
                if utt is None:
                    raise ClientError("'end' without 'start'")
                await _thread(_feed, utt, pcm, None)  # the resampler's last samples; a partial frame is refused
                events = utt.events(time.perf_counter())
                try:
                    while (event := await step(events)) is not None:
                        await ws.send_json(event)
                finally:
                    events.close()
                utt.close()
                server.release()
                utt, pcm, held = None, None, False
                await ws.send_json({"type": "done"})
            else:
                raise ClientError(f"a message of type {kind!r}: expected 'start' or 'end'")
    except (ClientError, AudioInputError, StreamError) as e:
        code = getattr(e, "code", 1008)
        log.info("stream closed on bad input: %s", e)
        try:
            await ws.send_json({"type": "error", "message": str(e)})
            await ws.close(code=code)
        except (WebSocketDisconnect, RuntimeError):
            pass
    except WebSocketDisconnect:
        pass
    finally:
        if utt is not None:
            utt.close()  # a client that left mid-stream: its cache goes with the utterance
        if held:
            server.release()


def _json_message(text) -> dict:
    try:
        req = json.loads(text)
    except (TypeError, json.JSONDecodeError):
        raise ClientError(f"a text message that is not JSON: {str(text)[:80]!r}", code=1003) from None
    if not isinstance(req, dict) or not isinstance(req.get("type"), str):
        raise ClientError("a text message must be a JSON object with a string 'type'", code=1003)
    return req


def _feed(utt: Utterance, pcm: PcmStream, data: bytes | None) -> None:
    """One binary message (None: the end of the stream) → 16 kHz samples → the utterance."""
    wave = pcm.push(data) if data is not None else pcm.end()
    if wave.size:
        utt.feed(wave)


def _start_fields(req: dict, server) -> tuple[tuple[str, int, int], tuple[str, ...], str]:
    """((format, sample_rate, channels), systems, prompt) of a 'start' message."""
    rate, fmt, channels = req.get("sample_rate"), req.get("format", "s16le"), req.get("channels", 1)
    lo, hi = STREAM_RATES
    if not _whole(rate) or not lo <= rate <= hi:
        raise ClientError(f"sample_rate {rate!r}: this server takes a whole number of Hz from {lo} to {hi}",
                          code=1003)
    if fmt not in PCM_FORMATS:
        raise ClientError(f"format {fmt!r}: choose from {sorted(PCM_FORMATS)}", code=1003)
    if not _whole(channels) or channels not in STREAM_CHANNELS:
        raise ClientError(f"channels {channels!r}: this server takes 1 (mono) or 2 (stereo, averaged)", code=1003)
    cascade = req.get("cascade", server.cascade is not None)
    if not isinstance(cascade, bool):
        raise ClientError("'cascade' must be true or false", code=1003)
    return (fmt, rate, channels), server.systems(cascade), server.check_prompt(req.get("prompt"))


def _whole(x) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)  # JSON's true is not 1 channel, nor 44100.0 a rate


def _same_origin(origin: str, host: str) -> bool:
    from urllib.parse import urlsplit

    return urlsplit(origin).netloc == host
