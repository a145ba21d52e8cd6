"""The models behind the server: MODEL is a run directory (JAX) or an export (PyTorch), anything else one
error naming it; text pieces streamed add up to the answer without splitting a character."""

import numpy as np
import pytest

from aura_jax.serve.answerers import DEFAULT_PROMPT, JaxAura, TextPieces, TorchAura, load_aura


def test_a_run_directory_is_served_by_jax_with_the_answer_of_its_offline_stream(tiny_run_dir):
    from starlette.testclient import TestClient

    from aura_jax.inference.generate import AuraStream
    from aura_jax.serve.app import Server
    from aura_jax.serve.routes import make_app
    from aura_jax.tokenizer import audio_prompt_ids

    aura = load_aura(str(tiny_run_dir), max_new_tokens=6)
    assert isinstance(aura, JaxAura) and "JAX" in aura.description
    pcm = np.round(np.random.default_rng(0).standard_normal(12000) * 3000).astype(np.int16)
    with TestClient(make_app(Server(aura))) as client, client.websocket_connect("/v1/stream") as ws:
        ws.send_json({"type": "start", "sample_rate": 16000})
        assert ws.receive_json()["type"] == "ready"
        ws.send_bytes(pcm[:5000].tobytes())
        ws.send_bytes(pcm[5000:].tobytes())
        ws.send_json({"type": "end"})
        events = []
        while (e := ws.receive_json())["type"] != "done":
            events.append(e)
    offline = AuraStream(aura.model, audio_prompt_ids(aura.tok, aura.config, DEFAULT_PROMPT), chunk_patches=5,
                         max_new_tokens=6, eos_token_id=[aura.tok.eos_token_id], pad_token_id=aura.tok.pad_token_id)
    ids = offline.run([pcm.astype(np.float32) / 32768])
    (answer,) = [e for e in events if e["type"] == "answer"]
    assert answer["text"] == aura.decode(ids).strip() and answer["timing"]["tokens"] == len(ids)


def test_an_export_is_served_by_pytorch(aura):
    assert isinstance(aura, TorchAura) and "PyTorch" in aura.description and aura.window_seconds == 30.0


def test_anything_else_is_one_error_naming_it(tmp_path):
    with pytest.raises(FileNotFoundError, match=f"{tmp_path}: neither a training run directory"):
        load_aura(str(tmp_path))


def test_text_pieces_hold_back_half_a_character_and_add_up_to_the_answer():
    from aura_jax.random_checkpoints import make_tokenizer

    tok = make_tokenizer(__import__("tempfile").mkdtemp())
    ids = tok("naïve café — ok ✓", add_special_tokens=False)["input_ids"]
    pieces = TextPieces(lambda x: tok.decode(x, skip_special_tokens=True))
    out = [pieces.push(i) for i in ids]
    assert "".join(out) == pieces.text == "naïve café — ok ✓"
    assert all("\ufffd" not in p for p in out) and "" in out  # some byte tokens waited for the rest
