"""The server's ways in give the answers the same models give offline on the same samples, with timings (a
stream at 44.1 kHz stereo: on the same audio resampled whole); bad input gets one clear error on its own
connection while the server keeps serving; a client that leaves mid-stream frees its cache; nothing is
written to disk unless asked. (The official `openai` client: test_openai_client.py.)"""

import base64
import functools
import gc
import json

import numpy as np
import pytest
from starlette.websockets import WebSocketDisconnect

from aura_jax.serve.answerers import DEFAULT_PROMPT
from aura_jax.serve.audio_input import encode_wav

from .conftest import question
from .test_audio_input import bomb


def offline(aura, cascade, pcm, prompt=DEFAULT_PROMPT):
    """(AuRA's answer, the cascade's transcript and answer) without the server, for a clip as 16-bit PCM or as
    float samples at 16 kHz."""
    return (offline_aura(aura, pcm, prompt), *offline_cascade(cascade, pcm, prompt))


def offline_aura(aura, pcm, prompt=DEFAULT_PROMPT):
    """AuRA's answer without the server: its stream fed the whole clip at once."""
    return _aura(aura, pcm.tobytes(), str(pcm.dtype), prompt)


def offline_cascade(cascade, pcm, prompt=DEFAULT_PROMPT):
    """The cascade's (transcript, answer) without the server, through transformers' generate."""
    transcript = _transcript(cascade, pcm.tobytes(), str(pcm.dtype))
    return transcript, _cascade_answer(cascade, transcript, prompt)


def _wave(data, dtype):
    pcm = np.frombuffer(data, dtype)
    return pcm.astype(np.float32) / 32768 if dtype == "int16" else pcm.astype(np.float32)


# The models are the session's: what they answer a clip offline is computed once for every test asking.
@functools.lru_cache(maxsize=None)
def _aura(aura, data, dtype, prompt):
    stream = aura.lm.stream(prompt, chunk_patches=aura.chunk_patches, padded=aura.padded,
                            max_new_tokens=aura.max_new_tokens)
    return stream.run([_wave(data, dtype)]).strip()


@functools.lru_cache(maxsize=None)
def _transcript(cascade, data, dtype):
    return cascade.system.transcribe(_wave(data, dtype), cascade.asr_tokens, fixed=False).strip()


@functools.lru_cache(maxsize=None)
def _cascade_answer(cascade, transcript, prompt):
    return cascade.system.answer(transcript, prompt, cascade.max_new_tokens).strip()


def speak(ws, pcm, piece=1600, **start):
    """A whole question over the socket in 100 ms pieces (or pieces of the bytes at `cuts`) → every event up
    to 'done'."""
    cuts = start.pop("cuts", None)
    ws.send_json({"type": "start", "sample_rate": 16000, "format": "s16le", **start})
    assert ws.receive_json()["type"] == "ready"
    data = pcm.tobytes()
    cuts = range(0, len(data), piece * pcm.itemsize) if cuts is None else cuts
    for a, b in zip(cuts, [*cuts[1:], len(data)]):
        ws.send_bytes(data[a:b])
    ws.send_json({"type": "end"})
    events = []
    while (event := ws.receive_json())["type"] != "done":
        assert event["type"] != "error", event
        events.append(event)
    return events


def answers(events):
    return {e["system"]: e for e in events if e["type"] == "answer"}


def test_the_websocket_stream_answers_as_the_models_do_offline(client, aura, cascade):
    pcm = question(0)
    with client.websocket_connect("/v1/stream") as ws:
        events = speak(ws, pcm)
    aura_text, transcript, cascade_text = offline(aura, cascade, pcm)
    got = answers(events)
    assert got["aura"]["text"] == aura_text and got["cascade"]["text"] == cascade_text
    assert got["cascade"]["transcript"] == transcript
    for system in ("aura", "cascade"):  # the tokens streamed add up to the answer
        assert "".join(e["text"] for e in events if e["type"] == "token" and e["system"] == system).strip() == \
            got[system]["text"]
        t = got[system]["timing"]
        assert 0 < t["first_token_s"] <= t["answer_s"] and t["audio_s"] == pytest.approx(len(pcm) / 16000, abs=1e-3)
    order = [e["system"] for e in events]
    assert order.index("cascade") > max(i for i, s in enumerate(order) if s == "aura")  # AuRA first, then cascade


def test_one_socket_takes_questions_in_turn_and_float_pcm(client, aura, cascade):
    a, b = question(1), question(2)
    with client.websocket_connect("/v1/stream") as ws:
        first = answers(speak(ws, a, cascade=False))
        second = answers(speak(ws, (b.astype(np.float32) / 32768), format="f32le", cascade=False))
    assert set(first) == {"aura"} and first["aura"]["text"] == offline_aura(aura, a)
    assert second["aura"]["text"] == offline_aura(aura, b)


def test_a_44_1_kHz_stereo_stream_answers_as_offline_on_the_audio_resampled_whole(client, aura):
    """Resampled as it arrives, in pieces of any size (most end inside a frame), the stream is heard as the whole
    clip resampled at once, bit for bit (test_audio_input.py): the answers are offline's exactly."""
    import soxr

    x = soxr.resample(question(2).astype(np.float32) / 32768, 16000, 44100)
    stereo = np.round(np.stack([0.9 * x, 0.6 * x], axis=1) * 32767).astype("<i2")
    cuts = np.cumsum(np.r_[0, np.random.default_rng(0).integers(1, 12000, 200)])
    with client.websocket_connect("/v1/stream") as ws:
        got = answers(speak(ws, stereo, cuts=list(cuts[cuts < stereo.nbytes]), sample_rate=44100, channels=2,
                            cascade=False))
    whole = soxr.resample((stereo.astype(np.float32) / 32768).mean(axis=1), 44100, 16000)
    assert got["aura"]["text"] == offline_aura(aura, whole)


def chat_body(pcm, stream=False, model="aura", text="Give a simple one sentence answer."):
    data = base64.b64encode(encode_wav(pcm.astype(np.float32) / 32768)).decode()
    return {"model": model, "stream": stream, "messages": [{"role": "user", "content": [
        {"type": "text", "text": text}, {"type": "input_audio", "input_audio": {"data": data, "format": "wav"}}]}]}


def test_chat_completions_stream_server_sent_events_in_openai_shape(client, aura, cascade):
    """(Not streaming, and through the official client: test_openai_client.py.)"""
    pcm = question(3)
    with client.stream("POST", "/v1/chat/completions", json=chat_body(pcm, stream=True)) as r:
        assert r.headers["content-type"].startswith("text/event-stream")
        lines = [line[6:] for line in r.iter_lines() if line.startswith("data: ")]
    assert lines[-1] == "[DONE]"
    chunks = [json.loads(x) for x in lines[:-1]]
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert "".join(c["choices"][0]["delta"].get("content", "") for c in chunks).strip() == offline_aura(aura, pcm)
    assert chunks[-1]["choices"][0]["finish_reason"] in ("stop", "length") and "timing" in chunks[-1]
    r = client.post("/v1/chat/completions", json=chat_body(pcm, model="cascade"))
    assert (r.json()["transcript"], r.json()["choices"][0]["message"]["content"]) == offline_cascade(cascade, pcm)


def test_chat_completions_as_both_stream_aura_then_the_cascade_as_two_choices(client, aura, cascade):
    pcm = question(3)
    with client.stream("POST", "/v1/chat/completions", json=chat_body(pcm, model="both", stream=True)) as r:
        chunks = [json.loads(line[6:]) for line in r.iter_lines() if line.startswith("data: {")]
    text = ["".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"][0]["index"] == i)
            for i in (0, 1)]
    assert [t.strip() for t in text] == [offline_aura(aura, pcm), offline_cascade(cascade, pcm)[1]]


def test_a_wav_post_gets_both_answers(client, aura, cascade):
    pcm = question(4)
    r = client.post("/v1/audio/answer", content=encode_wav(pcm.astype(np.float32) / 32768),
                    headers={"content-type": "audio/wav"})
    aura_text, transcript, cascade_text = offline(aura, cascade, pcm)
    assert r.status_code == 200 and r.json()["aura"]["text"] == aura_text
    assert r.json()["cascade"]["text"] == cascade_text and r.json()["cascade"]["transcript"] == transcript
    r = client.post("/v1/audio/answer?cascade=0&prompt=Transcribe%20the%20speech.",
                    content=encode_wav(pcm.astype(np.float32) / 32768))
    assert set(r.json()) == {"aura"} and r.json()["aura"]["text"] == offline_aura(aura, pcm, "Transcribe the speech.")


# -- bad input ---------------------------------------------------------------------------------------
def wav_bytes(seconds=0.5, rate=16000, channels=1):
    import io

    import soundfile as sf

    buf = io.BytesIO()
    sf.write(buf, np.zeros((int(seconds * rate), channels), np.float32) + 0.01, rate, format="WAV", subtype="PCM_16")
    return buf.getvalue()


def sound(fmt, seconds=0.5, rate=16000):
    import io

    import soundfile as sf

    buf = io.BytesIO()
    sf.write(buf, np.zeros(int(seconds * rate), np.float32) + 0.01, rate, format=fmt)
    return buf.getvalue()


TAKES = "this server takes WAV (8/16/24/32-bit PCM or float), MP3, FLAC or OGG"
BAD_FILES = {  # body → what the error says (44.1 kHz, stereo, MP3: test_openai_client.py, answered)
    "truncated WAV": (wav_bytes()[:-3000], "truncated WAV: its header announces 16000 bytes of samples, 13000 arrived"),
    "not audio": (b"%PDF-1.7 this is not a sound file" * 20, f"not an audio file this server reads; {TAKES}"),
    "unknown container (M4A)": (b"\x00\x00\x00\x20ftypM4A \x00\x00\x00\x00M4A mp42isom" + bytes(3000),
                                f"not an audio file this server reads; {TAKES}"),
    "corrupt MP3": (b"\xff\xfb\x90\xc4" + np.random.default_rng(0).bytes(5000),
                    f"a corrupt or unsupported MP3 file; {TAKES}"),
    "empty": (b"", f"not an audio file this server reads; {TAKES}"),
    "AIFF": (sound("AIFF"), f"the file is AIFF audio; {TAKES}"),
    "WAV at 1 kHz": (wav_bytes(rate=1000), f"the file is 1000 Hz; {TAKES}"),
    "header only": (wav_bytes(seconds=0), "the WAV file holds no samples"),
    "over-long": (wav_bytes(seconds=6), "the audio is longer than this server's limit of 5 s per question"),
    "decompression bomb (an hour of FLAC silence)": (bomb(), "longer than this server's limit of 5 s"),
}


@pytest.mark.parametrize("name", list(BAD_FILES))
def test_bad_files_get_one_clear_error_on_every_endpoint(client, name):
    body, says = BAD_FILES[name]
    status = 413 if "limit of" in says else 400
    r = client.post("/v1/audio/answer", content=body)
    assert r.status_code == status and says in r.json()["error"] and "\n" not in r.json()["error"], r.text
    chat = chat_body(question(6))
    chat["messages"][0]["content"][1]["input_audio"]["data"] = base64.b64encode(body).decode()
    r = client.post("/v1/chat/completions", json=chat)
    assert r.status_code == status and says in r.json()["error"]["message"]
    r = client.post("/v1/audio/transcriptions", files={"file": ("question", body)}, data={"model": "aura"})
    assert r.status_code == status and says in r.json()["error"]["message"] and r.json()["error"]["param"] == "file"
    assert client.server.in_use == 0 and not client.server.live  # (that answers still come: the test below)


FILE = {"file": ("question.wav", b"x")}
BAD_TRANSCRIPTIONS = {  # the request → its status, what the error says
    "not multipart": ({"json": {"model": "aura"}}, 400, "multipart/form-data"),
    "no file": ({"data": {"model": "aura"}, "files": {"audio": ("question.wav", b"x")}}, 400, "no file field 'file'"),
    "response_format srt": ({"data": {"model": "aura", "response_format": "srt"}, "files": FILE}, 400,
                            "json, text, verbose_json"),
    "stream": ({"data": {"model": "aura", "stream": "true"}, "files": FILE}, 400, "does not stream transcriptions"),
    "model whisper-1": ({"data": {"model": "whisper-1"}, "files": FILE}, 404, "transcribes as 'aura' or 'cascade'"),
}


@pytest.mark.parametrize("name", list(BAD_TRANSCRIPTIONS))
def test_transcription_requests_of_the_wrong_shape_get_an_openai_error(client, name):
    request, status, says = BAD_TRANSCRIPTIONS[name]
    r = client.post("/v1/audio/transcriptions", **request)
    assert r.status_code == status and says in r.json()["error"]["message"], r.json()


BAD_CHATS = {
    "not JSON": (b"{messages: oops", "not JSON"),
    "no messages": (json.dumps({"model": "aura"}).encode(), "'messages'"),
    "no audio": (json.dumps({"messages": [{"role": "user", "content": "hello"}]}).encode(), "0 input_audio"),
    "bad base64": (json.dumps({"messages": [{"role": "user", "content": [
        {"type": "input_audio", "input_audio": {"data": "@@@", "format": "wav"}}]}]}).encode(), "base64"),
    "format aac": (json.dumps({"messages": [{"role": "user", "content": [
        {"type": "input_audio", "input_audio": {"data": "", "format": "aac"}}]}]}).encode(), "wav, mp3, flac, ogg"),
    "unknown model": (json.dumps({"model": "gpt-4o", "messages": []}).encode(), "'aura', 'cascade' or 'both'"),
    "a list": (b"[1, 2]", "JSON object"),
}


@pytest.mark.parametrize("name", list(BAD_CHATS))
def test_chat_requests_of_the_wrong_shape_get_an_openai_error(client, name):
    body, says = BAD_CHATS[name]
    r = client.post("/v1/chat/completions", content=body, headers={"content-type": "application/json"})
    assert r.status_code in (400, 404) and r.json()["error"]["type"] == "invalid_request_error"
    assert says in r.json()["error"]["message"], r.json()


def socket_error(client, messages):
    """Send messages (dict: JSON, bytes: binary) → the error event and the close code."""
    with client.websocket_connect("/v1/stream") as ws:
        for m in messages:
            if isinstance(m, dict):
                ws.send_json(m)
                if m.get("type") == "start" and m.get("sample_rate") == 16000 and len(messages) > 1:
                    reply = ws.receive_json()
                    if reply["type"] == "error":
                        break
            elif isinstance(m, str):
                ws.send_text(m)
            else:
                ws.send_bytes(m)
        event = ws.receive_json()
        with pytest.raises(WebSocketDisconnect) as closed:
            ws.receive_json()
    return event, closed.value.code


START = {"type": "start", "sample_rate": 16000, "format": "s16le"}
BAD_STREAMS = {
    "96 kHz": ([{**START, "sample_rate": 96000}], "sample_rate 96000: this server takes a whole number of Hz from "
               "8000 to 48000", 1003),
    "a rate that is not a number": ([{**START, "sample_rate": "44.1k"}], "sample_rate '44.1k'", 1003),
    "mp3 format": ([{**START, "format": "mp3"}], "'mp3'", 1003),
    "3 channels": ([{**START, "channels": 3}], "channels 3: this server takes 1 (mono) or 2 (stereo", 1003),
    "ending inside a sample": ([START, b"\x01\x02\x03", {"type": "end"}], "ended inside a frame: 1 bytes left", 1008),
    "float noise": ([{**START, "format": "f32le"}, np.frombuffer(b"\xff\x7f\xff\x7f" * 400, np.uint8).tobytes()],
                    "not audio", 1008),
    "audio first": ([b"\x00\x00" * 100], "before 'start'", 1008),
    "not JSON": (["hello"], "not JSON", 1003),
    "no type": ([{"sample_rate": 16000}], "'type'", 1003),
    "unknown type": ([{"type": "pause"}], "'pause'", 1008),
    "end first": ([{"type": "end"}], "without 'start'", 1008),
    "empty": ([START, {"type": "end"}], "no audio", 1008),
    "over-long": ([START] + [np.zeros(16000, np.int16).tobytes()] * 6, "limit of 5 s", 1009),
    "too big a message": ([START, np.zeros(3 * 2**20, np.int16).tobytes()], "--max-message-bytes", 1009),
}


@pytest.mark.parametrize("name", list(BAD_STREAMS))
def test_bad_streams_get_one_error_then_close(client, name):
    messages, says, code = BAD_STREAMS[name]
    event, closed = socket_error(client, messages)
    assert event["type"] == "error" and says in event["message"] and closed == code, event
    gc.collect()
    assert client.server.in_use == 0 and not client.server.live


def test_after_every_bad_input_the_server_still_answers_as_offline(client, aura, cascade):
    with client.websocket_connect("/v1/stream") as good:  # a client speaking while the others misbehave
        good.send_json({**START, "cascade": False})
        assert good.receive_json()["type"] == "ready"
        pcm = question(5)
        good.send_bytes(pcm[:8000].tobytes())
        for messages, says, _ in BAD_STREAMS.values():
            assert says in socket_error(client, messages)[0]["message"]
        for body, says in BAD_FILES.values():
            assert says in client.post("/v1/audio/answer", content=body).json()["error"]
        good.send_bytes(pcm[8000:].tobytes())
        good.send_json({"type": "end"})
        events = []
        while (e := good.receive_json())["type"] != "done":
            events.append(e)
    assert answers(events)["aura"]["text"] == offline_aura(aura, pcm)
    assert client.server.in_use == 0 and not client.server.live


def test_a_client_that_leaves_mid_stream_frees_its_cache(client):
    import weakref

    with client.websocket_connect("/v1/stream") as ws:
        ws.send_json(START)
        ws.receive_json()
        ws.send_bytes(question(7).tobytes())
        (utt,) = list(client.server.live)
        cache = weakref.ref(utt.stream.cache)
        assert client.server.in_use == 1
    client.get("/health")  # the server has seen the disconnect once it answers the next request
    utt = None
    gc.collect()
    assert client.server.in_use == 0 and not client.server.live and cache() is None


def test_a_busy_server_says_so(make_server):
    from starlette.testclient import TestClient

    from aura_jax.serve.routes import make_app

    server = make_server(max_streams=1)
    with TestClient(make_app(server)) as c:
        with c.websocket_connect("/v1/stream") as first:
            first.send_json(START)
            assert first.receive_json()["type"] == "ready"
            event, code = socket_error(c, [START])
            assert "busy" in event["message"] and code == 1013
            r = c.post("/v1/audio/answer", content=encode_wav(np.zeros(8000, np.float32) + 0.01))
            assert r.status_code == 503 and "busy" in r.json()["error"]


def test_another_sites_page_may_not_open_the_stream(client):
    with pytest.raises(WebSocketDisconnect) as closed:
        with client.websocket_connect("/v1/stream", headers={"origin": "https://evil.example"}) as ws:
            ws.receive_json()
    assert closed.value.code == 1008
    with client.websocket_connect("/v1/stream", headers={"origin": "http://testserver"}) as ws:
        ws.send_json(START)
        assert ws.receive_json()["type"] == "ready"


def test_nothing_is_written_unless_record_is_asked(make_server, tmp_path, monkeypatch):
    from starlette.testclient import TestClient

    from aura_jax.serve.routes import make_app

    monkeypatch.chdir(tmp_path)
    wav = encode_wav(question(8).astype(np.float32) / 32768)
    with TestClient(make_app(make_server())) as c:
        assert c.post("/v1/audio/answer", content=wav).status_code == 200
    assert list(tmp_path.rglob("*")) == []
    server = make_server()
    server.record_dir = tmp_path / "kept"
    with TestClient(make_app(server)) as c:
        answer = c.post("/v1/audio/answer", content=wav).json()
    (kept_wav,), (kept_json,) = sorted((tmp_path / "kept").glob("*.wav")), sorted((tmp_path / "kept").glob("*.json"))
    assert kept_wav.read_bytes() == wav and json.loads(kept_json.read_text())["answers"]["aura"]["text"] == \
        answer["aura"]["text"]


def test_the_page_and_its_assets_are_all_local(client):
    import re

    page = client.get("/")
    assert page.status_code == 200 and "default-src 'self'" in page.headers["content-security-policy"]
    assets = re.findall(r'(?:src|href)="([^"]+)"', page.text)
    assert assets and all(a.startswith("/static/") for a in assets)
    for a in assets + ["/static/capture.js", "/static/example.wav"]:
        assert client.get(a).status_code == 200, a
    js = client.get("/static/page.js").text + client.get("/static/capture.js").text
    assert not re.search(r"https?://", js)  # nothing fetched from elsewhere (the SVG icon names its namespace only)
    assert client.get("/health").json()["limits"]["max_audio_seconds"] == 5.0
