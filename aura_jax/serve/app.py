"""The server: one Starlette app, four ways in, one utterance per request.

    GET  /                          the voice page (static/, every asset local)
    WS   /v1/stream                 {"type": "start", "sample_rate": ...}, binary PCM chunks (8-48 kHz, mono or
                                    stereo), {"type": "end"} → token events, one answer record per system, done
    POST /v1/chat/completions       OpenAI's chat-completions shape with an `input_audio` part (base64 WAV, MP3,
                                    ...), `"stream": true` for server-sent events; `"model": "cascade"` asks the cascade
    POST /v1/audio/transcriptions   OpenAI's transcription shape (multipart `file`): AuRA's or the cascade's transcript
    POST /v1/audio/answer           an audio file as the body (?prompt=...): every served system's answer and timing
    GET  /health                    model, limits, what audio it takes, streams in use
(`routes.make_app(server)` builds the app; this module holds what they share.)

The models run in worker threads (anyio), one step at a time: audio is prefilled as each WebSocket
chunk arrives, and each token goes out as soon as it is decoded. The cascade runs after AuRA has
answered (this machine's cores are shared), so each system's time to first token is measured from
the moment it could start: for AuRA the end of speech, for the cascade its own start (the end of
speech, had it run alone). Nothing a client sends is written to disk unless `record_dir` is set."""

from __future__ import annotations

import dataclasses
import json
import logging
import threading
import time
import uuid
from pathlib import Path

import anyio
import numpy as np

from aura_jax.serve.answerers import DEFAULT_PROMPT, TextPieces
from aura_jax.serve.audio_input import (
    FILE_FORMATS,
    FILE_RATES,
    PCM_FORMATS,
    SAMPLING_RATE,
    STREAM_CHANNELS,
    STREAM_RATES,
    encode_wav,
)

STATIC = Path(__file__).parent / "static"
log = logging.getLogger("aura_jax.serve")


@dataclasses.dataclass(frozen=True)
class Limits:
    max_audio_seconds: float = 30.0  # per utterance (and never more than the model's window)
    max_message_bytes: int = 4 * 2**20  # one WebSocket message, one HTTP body
    max_streams: int = 4  # utterances in flight at once (WebSocket streams and HTTP requests)
    max_prompt_chars: int = 2000


class ClientError(Exception):
    """Bad input: sent to that client as one message (WebSocket close `code`, HTTP `status`)."""

    def __init__(self, message: str, *, code: int = 1008, status: int = 400, param: str | None = None):
        super().__init__(message)
        self.code, self.status, self.param = code, status, param


class Utterance:
    """One spoken question on its way through the served systems (`systems`: "aura" and/or "cascade")."""

    def __init__(self, server: "Server", prompt: str, systems: tuple[str, ...]):
        self.server, self.prompt, self.systems = server, prompt, systems
        self.stream = server.aura.open(prompt) if "aura" in systems else None
        self.pieces: list[np.ndarray] = []  # kept for the cascade and --record only
        self.samples = 0
        server.live.add(self)

    @property
    def audio_seconds(self) -> float:
        return self.samples / SAMPLING_RATE

    def feed(self, wave: np.ndarray) -> None:
        limit = self.server.max_audio_seconds
        if self.samples + wave.size > limit * SAMPLING_RATE:
            raise ClientError(f"the audio is longer than this server's limit of {limit:g} s per question "
                              "(--max-audio-seconds)", code=1009, status=413)
        self.samples += wave.size
        if self.stream is not None:
            self.stream.feed_audio(wave)
        if "cascade" in self.systems or self.server.record_dir:
            self.pieces.append(wave)

    def events(self, end_of_speech: float):
        """Token and answer events of each system in turn (a generator: the caller steps it in a thread)."""
        if self.samples == 0:
            raise ClientError("no audio was sent before the end")
        wave = np.concatenate(self.pieces) if self.pieces else None
        answers = {}
        if self.stream is not None:
            ids = self.stream.finish_ids()
            yield from self._tokens("aura", ids, self.server.aura.decode, end_of_speech, answers)
            self.stream = None
        if "cascade" in self.systems:
            cascade, start = self.server.cascade, time.perf_counter()
            transcript = cascade.transcribe(wave)
            yield {"type": "transcript", "system": "cascade", "text": transcript,
                   "seconds": round(time.perf_counter() - start, 4)}
            yield from self._tokens("cascade", cascade.answer_ids(transcript, self.prompt), cascade.decode, start,
                                    answers, transcript=transcript)
        if self.server.record_dir:
            self.server.record(wave, self.prompt, answers)

    def _tokens(self, system: str, ids, decode, start: float, answers: dict, **extra):
        pieces, first, last, n = TextPieces(decode), None, None, 0
        try:
            for token in ids:
                last = time.perf_counter()
                first, n = first or last, n + 1
                piece = pieces.push(token)
                if piece:
                    yield {"type": "token", "system": system, "text": piece}
        finally:
            if hasattr(ids, "close"):
                ids.close()  # a client that left mid-answer: the generator's cache goes now
        done = time.perf_counter()
        timing = {"first_token_s": round((first or done) - start, 4),
                  "tokens": n, "tokens_per_s": round((n - 1) / (last - first), 2) if n > 1 and last > first else None,
                  "answer_s": round(done - start, 4), "audio_s": round(self.audio_seconds, 3),
                  "clock": "from the end of speech" if system == "aura" else "from the cascade's start"}
        text = pieces.text.strip()
        answers[system] = {"text": text, **extra, "timing": timing}
        yield {"type": "answer", "system": system, "text": text, **extra, "timing": timing,
               "finish_reason": "length" if n >= self.server.max_new_tokens(system) else "stop"}

    def close(self) -> None:
        self.stream, self.pieces = None, []
        self.server.live.discard(self)


class Server:
    def __init__(self, aura, cascade=None, limits: Limits = Limits(), *, record_dir: str | None = None,
                 allow_origins: tuple[str, ...] = (), cascade_error: str | None = None):
        self.aura, self.cascade, self.limits = aura, cascade, limits
        self.cascade_error = cascade_error  # why a cascade that was asked for is not served (/health, the page)
        self.record_dir = Path(record_dir) if record_dir else None
        self.allow_origins = set(allow_origins)
        self.max_audio_seconds = min(limits.max_audio_seconds, aura.window_seconds)
        self.live: set[Utterance] = set()  # utterances holding a model's cache (tests check that they go)
        self.in_use, self._lock = 0, threading.Lock()

    def max_new_tokens(self, system: str) -> int:
        return (self.aura if system == "aura" else self.cascade).max_new_tokens

    def systems(self, cascade: bool) -> tuple[str, ...]:
        if cascade and self.cascade is None:
            raise ClientError(self.cascade_error or "this server runs no cascade (start it with --cascade WHISPER LLM)")
        return ("aura", "cascade") if cascade else ("aura",)

    # -- capacity -------------------------------------------------------------
    def acquire(self) -> None:
        with self._lock:
            if self.in_use >= self.limits.max_streams:
                raise ClientError(f"the server is busy: {self.limits.max_streams} questions in flight "
                                  "(--max-streams); try again", code=1013, status=503)
            self.in_use += 1

    def release(self) -> None:
        with self._lock:
            self.in_use -= 1

    def record(self, wave, prompt: str, answers: dict) -> None:
        self.record_dir.mkdir(parents=True, exist_ok=True)
        name = f"{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:8]}"
        (self.record_dir / f"{name}.wav").write_bytes(encode_wav(wave))
        (self.record_dir / f"{name}.json").write_text(json.dumps({"prompt": prompt, "answers": answers}, indent=1))

    def check_prompt(self, prompt) -> str:
        if prompt is None:
            return DEFAULT_PROMPT
        if not isinstance(prompt, str) or not prompt.strip():
            raise ClientError("'prompt' must be a non-empty string", param="prompt")
        if len(prompt) > self.limits.max_prompt_chars:
            raise ClientError(f"the prompt is {len(prompt)} characters; the limit is {self.limits.max_prompt_chars}",
                              param="prompt")
        return prompt

    def info(self) -> dict:
        return {"model": self.aura.description, "cascade": self.cascade.description if self.cascade else None,
                "cascade_error": self.cascade_error,
                "limits": {**dataclasses.asdict(self.limits), "max_audio_seconds": self.max_audio_seconds},
                "stream": {"sample_rates": list(STREAM_RATES), "channels": list(STREAM_CHANNELS),
                           "formats": sorted(PCM_FORMATS)},
                "files": {"formats": sorted({f.lower() for f in FILE_FORMATS.values()}),
                          "sample_rates": list(FILE_RATES)},
                "heard_at": SAMPLING_RATE, "streams_in_use": self.in_use,
                "default_prompt": DEFAULT_PROMPT}

    def warm_up(self) -> None:
        """One silent utterance through every system: compilation (JAX) and first-call costs are paid
        before the first person speaks."""
        self._warm(("aura",))
        if self.cascade is not None:
            try:
                self._warm(("cascade",))
            except Exception as e:  # noqa: BLE001 - a cascade that fails its first question is not served
                self.cascade_error = cascade_failure(self.cascade.pair, e)
                self.cascade = None

    def _warm(self, systems: tuple[str, ...]) -> None:
        utt = Utterance(self, DEFAULT_PROMPT, systems)
        try:
            utt.feed(np.zeros(SAMPLING_RATE, np.float32))
            for _ in utt.events(time.perf_counter()):
                pass
        finally:
            utt.close()


async def step(gen):
    """The next event of a generator, computed in a worker thread (None at its end)."""
    return await anyio.to_thread.run_sync(next, gen, None)


def cascade_failure(pair, error: Exception) -> str:
    """One line for a cascade that cannot start: which directories, what failed, and that AuRA runs alone."""
    what = str(error).strip().splitlines()[0] if str(error).strip() else ""
    return (f"the cascade (Whisper {pair[0]} → {pair[1]}) could not start: {type(error).__name__}"
            f"{': ' + what if what else ''}; serving AuRA without it (pass --cascade WHISPER LLM for another, "
            "or --no-cascade)")
