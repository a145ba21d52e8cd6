"""The official `openai` client against the server on 127.0.0.1 (uvicorn, as `aura-jax serve` runs it): chat
with input_audio, streaming or not, and transcriptions, AuRA's and the cascade's. The same question as the
audio people have (22.05, 44.1 and 48 kHz stereo WAV, 16 kHz float WAV, MP3) gets the answers of the 16 kHz
original, which are the models' offline. MP3 is lossy: there AuRA answers what the MP3 holds, that is its
decoded samples resampled to 16 kHz here, and the cascade hears the same words. Bad files get one error
line, and the next question is answered."""

import base64
import io

import numpy as np
import pytest
import soundfile as sf
import soxr

from aura_jax.serve.answerers import DEFAULT_PROMPT
from aura_jax.serve.app import Limits, Server
from aura_jax.serve.audio_input import encode_wav

from .conftest import question
from .test_protocol import BAD_FILES, offline, offline_aura, offline_cascade


@pytest.fixture(scope="module")
def api(aura, cascade):
    from openai import OpenAI

    from aura_jax.bench.serve import serve_in_thread

    url, stop = serve_in_thread(Server(aura, cascade, Limits(max_audio_seconds=5)))
    yield OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0)
    stop()


def ask(api, data: bytes, fmt: str = "wav", model: str = "both", **kw):
    return api.chat.completions.create(model=model, **kw, messages=[{"role": "user", "content": [
        {"type": "text", "text": DEFAULT_PROMPT},
        {"type": "input_audio", "input_audio": {"data": base64.b64encode(data).decode(), "format": fmt}}]}])


def said(r) -> tuple[str, str, str]:
    """(AuRA's answer, the cascade's transcript, its answer) of a "both" completion."""
    return r.choices[0].message.content, r.transcript, r.choices[1].message.content


def encoded(x, rate: int, fmt: str = "WAV", subtype: str | None = "PCM_16") -> bytes:
    buf = io.BytesIO()
    sf.write(buf, x, rate, format=fmt, subtype=subtype)
    return buf.getvalue()


WAVE = question(0).astype(np.float32) / 32768  # "What is the capital of France?" at 16 kHz


def stereo(rate: int) -> np.ndarray:
    """The question recorded at `rate` on two channels."""
    x = soxr.resample(WAVE, 16000, rate)
    return np.stack([x, x], axis=1)


VARIANTS = {  # name: (the file, input_audio.format)
    "22.05 kHz stereo WAV": (encoded(stereo(22050), 22050), "wav"),
    "44.1 kHz stereo WAV": (encoded(stereo(44100), 44100), "wav"),
    "48 kHz stereo WAV": (encoded(stereo(48000), 48000), "wav"),
    "16 kHz float WAV": (encoded(WAVE, 16000, subtype="FLOAT"), "wav"),
    "44.1 kHz stereo MP3": (encoded(stereo(44100), 44100, "MP3", None), "mp3"),
}


@pytest.fixture(scope="module")
def original(api, aura, cascade):
    """The answers to the 16 kHz original: the models' offline."""
    r = ask(api, encode_wav(WAVE))
    assert said(r) == offline(aura, cascade, question(0)) and r.choices[0].finish_reason in ("stop", "length")
    assert r.timing["aura"]["first_token_s"] > 0 and r.timing["cascade"]["first_token_s"] > 0
    return said(r)


@pytest.mark.parametrize("name", list(VARIANTS))
def test_audio_at_any_rate_in_any_format_gets_the_answers_of_the_16_kHz_original(api, original, name):
    data, fmt = VARIANTS[name]
    got = said(ask(api, data, fmt))
    if fmt != "mp3":
        assert got == original
        return
    x, rate = sf.read(io.BytesIO(data), dtype="float32")
    resampled_here = soxr.resample(x.mean(axis=1), rate, 16000)
    assert got == said(ask(api, encoded(resampled_here, 16000, subtype="FLOAT")))
    assert got[1] == original[1]  # the words heard: "What is the capital of France?"


def test_chat_streams_through_the_official_client(api, original):
    chunks = list(ask(api, encode_wav(WAVE), model="aura", stream=True))
    assert "".join(c.choices[0].delta.content or "" for c in chunks).strip() == original[0]
    assert chunks[-1].choices[0].finish_reason in ("stop", "length")


def test_transcriptions_are_auras_and_the_cascades(api, aura, cascade):
    pcm = question(4)
    aura_heard, whisper_heard = offline_aura(aura, pcm, aura.asr_prompt), offline_cascade(cascade, pcm)[0]
    wav = encode_wav(pcm.astype(np.float32) / 32768)
    assert api.audio.transcriptions.create(file=("question.wav", wav), model="aura").text == aura_heard
    assert api.audio.transcriptions.create(file=("question.wav", wav), model="cascade",
                                              response_format="text").strip() == whisper_heard
    x = soxr.resample(pcm.astype(np.float32) / 32768, 16000, 48000)
    v = api.audio.transcriptions.create(file=("question.wav", encoded(np.stack([x, x], 1), 48000)),
                                           model="cascade", response_format="verbose_json")
    assert v.text == whisper_heard and v.duration == pytest.approx(pcm.size / 16000, abs=0.01)
    assert v.language == "english" and v.timing["transcribe_s"] > 0


def test_bad_files_get_one_error_line_and_the_next_question_is_answered(api, original):
    import openai

    for name in ("decompression bomb (an hour of FLAC silence)", "corrupt MP3", "unknown container (M4A)"):
        body, says = BAD_FILES[name]
        for call in (lambda: ask(api, body, "mp3", model="aura"),
                     lambda: api.audio.transcriptions.create(file=("question.mp3", body), model="aura")):
            with pytest.raises(openai.APIStatusError) as e:
                call()
            assert e.value.status_code == (413 if "limit" in says else 400), name
            assert says in e.value.body["message"] and "\n" not in e.value.body["message"]
    assert ask(api, encode_wav(WAVE), model="aura").choices[0].message.content == original[0]
