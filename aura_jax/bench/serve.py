"""`aura-jax bench-serve MODEL [--cascade WHISPER LLM]`: what a person at the page waits for.

The server runs in this process (uvicorn on 127.0.0.1), and clients speak to it over the WebSocket as a
microphone would: 100 ms of 16-bit PCM every 100 ms, then "end". Two measurements:

  alone   each question by itself, short (one sentence) and long (a paragraph, then the question):
          time to first token after the end of speech, AuRA against the cascade (which starts after AuRA
          has answered: the cores are shared, so each is timed from the moment it could start)
  load    N clients at once, each with a different question, for R rounds (AuRA only): p50/p95 of the
          first-token time, seen by the server and by the client; every answer must be the one the model
          gives that clip offline (nothing dropped, nothing mixed up between clients)
"""

from __future__ import annotations

import asyncio
import json
import socket
import statistics
import threading
import time
from pathlib import Path

import numpy as np

from aura_jax.bench.machine import load_average, load_warning, physical_cores

SHORT = ["What is the capital of France?", "Who wrote Romeo and Juliet?", "How many legs does a spider have?",
         "Which planet is known as the red planet?", "What is the largest ocean on Earth?",
         "What do bees make?", "Who painted the Mona Lisa?", "What is frozen water called?"]
LONG = ("I was reading about the history of Europe last night, about kings and queens and the old cities where "
        "they lived, and about the rivers and the mountains between them. After all of that, I still wonder: ")
VOICES = [("espeak-ng", "en-us"), ("flite", "awb"), ("espeak-ng", "en-gb"), ("flite", "rms")]


def spoken(text: str, i: int = 0) -> np.ndarray:
    """The 16-bit PCM a client would send for `text`, in voice i (espeak-ng and flite in turn)."""
    from aura_jax.synth import speak_with

    engine, voice = VOICES[i % len(VOICES)]
    return np.round(np.clip(speak_with(engine, voice, text), -1, 1) * 32767).astype(np.int16)


def serve_in_thread(server):
    """uvicorn on a free 127.0.0.1 port in a daemon thread → (its base URL, stop())."""
    import uvicorn

    from aura_jax.serve.routes import make_app

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    uv = uvicorn.Server(uvicorn.Config(make_app(server), host="127.0.0.1", port=port, log_level="warning",
                                       ws_max_size=server.limits.max_message_bytes + 4096))
    thread = threading.Thread(target=uv.run, daemon=True)
    thread.start()
    while not uv.started:
        if not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)

    def stop():
        uv.should_exit = True
        thread.join(10)

    return f"http://127.0.0.1:{port}", stop


async def speak(url: str, pcm: np.ndarray, *, cascade: bool, pace: bool = True, piece: int = 1600) -> dict:
    """One client of the server at `url` (http://host:port): the question at the pace of speech on its
    WebSocket, then every event → answers, timings, errors."""
    from websockets.asyncio.client import connect

    out = {"answers": {}, "timing": {}, "client_first_token_s": {}, "error": None}
    async with connect(url.replace("http", "ws", 1) + "/v1/stream", max_size=None) as ws:
        await ws.send(json.dumps({"type": "start", "sample_rate": 16000, "format": "s16le", "cascade": cascade}))
        ready = json.loads(await ws.recv())
        if ready["type"] != "ready":
            return {**out, "error": ready.get("message", str(ready))}
        start = time.perf_counter()
        for k, i in enumerate(range(0, len(pcm), piece)):
            if pace:
                await asyncio.sleep(max(0.0, start + (k + 1) * piece / 16000 - time.perf_counter()))
            await ws.send(pcm[i:i + piece].tobytes())
        await ws.send(json.dumps({"type": "end"}))
        end = time.perf_counter()
        while True:
            event = json.loads(await ws.recv())
            if event["type"] == "token":
                out["client_first_token_s"].setdefault(event["system"], round(time.perf_counter() - end, 4))
            elif event["type"] == "answer":
                out["answers"][event["system"]] = event["text"]
                out["timing"][event["system"]] = event["timing"]
            elif event["type"] == "error":
                return {**out, "error": event["message"]}
            elif event["type"] == "done":
                return out


def offline_answers(server, clips: list[np.ndarray], cascade: bool) -> list[dict]:
    """What each clip's answer must be: the models without the server (the AuRA stream fed the whole clip)."""
    from aura_jax.serve.answerers import DEFAULT_PROMPT

    out = []
    for pcm in clips:
        wave = pcm.astype(np.float32) / 32768
        stream = server.aura.open(DEFAULT_PROMPT)
        stream.feed_audio(wave)
        answers = {"aura": server.aura.decode(list(stream.finish_ids())).strip()}
        if cascade:
            transcript = server.cascade.transcribe(wave)
            answers["cascade"] = server.cascade.decode(list(server.cascade.answer_ids(transcript, DEFAULT_PROMPT))).strip()
        out.append(answers)
    return out


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q)) if values else float("nan")


async def load_round(url: str, clips, streams: int, pace: bool) -> list[dict]:
    return await asyncio.gather(*(speak(url, clips[i % len(clips)], cascade=False, pace=pace) for i in range(streams)))


def measure_load(server, url: str, clips, expected, *, streams: int, rounds: int, pace: bool = True) -> dict:
    """N concurrent clients for R rounds; each client i speaks clip i mod len(clips)."""
    results = []
    for _ in range(rounds):
        results += [(i % len(clips), r) for i, r in enumerate(asyncio.run(load_round(url, clips, streams, pace)))]
    errors = [r["error"] for _, r in results if r["error"]]
    wrong = sum(1 for i, r in results if not r["error"] and r["answers"].get("aura") != expected[i]["aura"])
    server_s = [r["timing"]["aura"]["first_token_s"] for _, r in results if "aura" in r["timing"]]
    client_s = [r["client_first_token_s"]["aura"] for _, r in results if "aura" in r["client_first_token_s"]]
    return {"streams": streams, "rounds": rounds, "requests": len(results), "errors": errors, "wrong_answers": wrong,
            "distinct_expected_answers": len({e["aura"] for e in expected}),
            "first_token_s": {"server_p50": percentile(server_s, 50), "server_p95": percentile(server_s, 95),
                              "client_p50": percentile(client_s, 50), "client_p95": percentile(client_s, 95)}}


def measure_alone(url: str, named_clips: dict[str, np.ndarray], cascade: bool, repeats: int) -> dict:
    """Each question by itself, `repeats` times: median first-token seconds per system."""
    out = {}
    for name, pcm in named_clips.items():
        runs = [asyncio.run(speak(url, pcm, cascade=cascade)) for _ in range(repeats)]
        bad = [r["error"] for r in runs if r["error"]]
        if bad:
            raise RuntimeError(f"{name}: {bad[0]}")
        out[name] = {"audio_s": round(len(pcm) / 16000, 2)}
        for system in runs[0]["timing"]:
            firsts = [r["timing"][system]["first_token_s"] for r in runs]
            out[name][system] = {"first_token_s_median": round(statistics.median(firsts), 4),
                                 "first_token_s_min": round(min(firsts), 4), "first_token_s_max": round(max(firsts), 4),
                                 "client_first_token_s_median": round(statistics.median(
                                     r["client_first_token_s"].get(system, float("nan")) for r in runs), 4),
                                 "tokens_per_s_median": statistics.median(
                                     r["timing"][system]["tokens_per_s"] or 0.0 for r in runs),
                                 "answer": runs[0]["answers"][system]}
    return out


def add_arguments(p) -> None:
    p.add_argument("model", help="an aura-jax export or run directory (as for aura-jax serve)")
    p.add_argument("--cascade", nargs=2, metavar=("WHISPER", "LLM"), default=None)
    p.add_argument("--streams", type=int, default=4, help="concurrent clients in the load test")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--repeats", type=int, default=3, help="runs of each question alone")
    p.add_argument("--max-new-tokens", type=int, default=32)
    p.add_argument("--out", default="runs/bench_serve", help="JSON and markdown of the figures")


def main(args) -> int:
    from aura_jax.serve.answerers import Cascade, load_aura
    from aura_jax.serve.app import Limits, Server

    load, cores = load_average(), physical_cores()
    aura = load_aura(args.model, max_new_tokens=args.max_new_tokens)
    cascade = Cascade(*args.cascade, max_new_tokens=args.max_new_tokens) if args.cascade else None
    server = Server(aura, cascade, Limits(max_streams=max(args.streams, 1)))
    server.warm_up()
    short = {f"short {i + 1}": spoken(q, i) for i, q in enumerate(SHORT[:2])}
    long_ = {f"long {i + 1}": spoken(LONG + q.lower(), i) for i, q in enumerate(SHORT[:2])}
    clips = [spoken(q, i) for i, q in enumerate(SHORT)]
    url, stop = serve_in_thread(server)
    try:
        alone = measure_alone(url, {**short, **long_}, cascade is not None, args.repeats)
        expected = offline_answers(server, clips, cascade=False)
        loaded = measure_load(server, url, clips, expected, streams=args.streams, rounds=args.rounds)
    finally:
        stop()
    report = {"model": aura.description, "cascade": cascade.description if cascade else None,
              "load_average_before": load, "cores": cores, "warning": load_warning(load, cores),
              "alone": alone, "load": loaded, "max_new_tokens": args.max_new_tokens}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "bench_serve.json").write_text(json.dumps(report, indent=1))
    print(json.dumps(report, indent=1))
    return 0 if not loaded["errors"] and not loaded["wrong_answers"] else 1
