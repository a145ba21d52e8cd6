"""The served models: the real pair's AuRA after a 2-step run (`real_pair_run`, exported to PyTorch) and the
real cascade (Whisper tiny.en, then SmolLM2-135M-Instruct), behind the real app (Starlette's TestClient, or
uvicorn on 127.0.0.1 for the browser). Real models, so that answers are words that differ with the audio:
a tiny random LM answers every clip with the same newlines, which could not show a mixed-up stream."""

import functools
import os

import numpy as np
import pytest

from aura_jax.serve.answerers import Cascade, TorchAura
from aura_jax.serve.app import Limits, Server


@pytest.fixture(scope="session")
def aura(request):
    """AURA_JAX_SERVE_MODEL=runs/demo/export serves the demo's model instead (docs' screenshot)."""
    path = os.environ.get("AURA_JAX_SERVE_MODEL") or request.getfixturevalue("real_pair_run")[1] / "merged"
    return TorchAura(str(path), max_new_tokens=8)


@pytest.fixture(scope="session")
def cascade(real_models):
    return Cascade(str(real_models["whisper-tiny.en"]), str(real_models["smollm2-135m-instruct"]),
                   max_new_tokens=8, asr_tokens=24)


@pytest.fixture
def make_server(aura, cascade):
    def make(with_cascade=True, **limits):
        return Server(aura, cascade if with_cascade else None, Limits(**limits))
    return make


@pytest.fixture
def client(make_server):
    from starlette.testclient import TestClient

    from aura_jax.serve.routes import make_app

    server = make_server(max_audio_seconds=5)  # short enough to reach quickly in the over-long tests
    with TestClient(make_app(server)) as c:
        c.server = server
        yield c


QUESTIONS = ["What is the capital of France?", "Who wrote Romeo and Juliet?", "How many legs does a spider have?",
             "Which planet is known as the red planet?", "What is the largest ocean on Earth?",
             "What color is the sky on a clear day?", "How many days are in a week?", "What do bees make?",
             "What is frozen water called?", "Who painted the Mona Lisa?"]


@functools.lru_cache(maxsize=None)
def _spoken(i: int) -> bytes:
    from aura_jax.bench.serve import spoken

    return spoken(QUESTIONS[i % len(QUESTIONS)], i).tobytes()


def question(i: int = 0) -> np.ndarray:
    """Spoken question i (espeak-ng and flite voices in turn) as the 16-bit PCM a client sends."""
    return np.frombuffer(_spoken(i), np.int16).copy()
