"""`aura-jax serve`: this machine only unless another address is asked for, and then a warning says so;
limits are flags and must be positive; the cascade beside AuRA is the pair MODEL records (its teacher and
its LLM) unless directories are passed, and a recorded directory that is missing is one line naming it."""

import json
from pathlib import Path

import pytest

from aura_jax import cli
from aura_jax.serve.answerers import recorded_cascade


@pytest.fixture
def ran(monkeypatch):
    import uvicorn

    calls = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: calls.append({"server": app.state.server, **kw}))
    return calls


def test_the_default_binds_to_loopback_without_a_warning(tiny_run_dir, ran, capsys):
    assert cli.main(["serve", str(tiny_run_dir), "--no-warmup", "--no-cascade", "--max-streams", "2"]) == 0
    assert ran[0]["host"] == "127.0.0.1" and ran[0]["port"] == 8000 and ran[0]["server"].cascade is None
    assert "WARNING" not in capsys.readouterr().err


def test_another_host_must_be_asked_for_and_is_warned_about(tiny_run_dir, ran, capsys):
    assert cli.main(["serve", str(tiny_run_dir), "--no-warmup", "--no-cascade", "--host", "0.0.0.0",
                     "--port", "9001"]) == 0
    assert ran[0]["host"] == "0.0.0.0" and ran[0]["port"] == 9001
    assert "WARNING: serving on 0.0.0.0" in capsys.readouterr().err


def test_limits_must_be_positive(tiny_run_dir, ran):
    with pytest.raises(SystemExit, match="--max-audio-seconds must be positive"):
        cli.main(["serve", str(tiny_run_dir), "--no-warmup", "--max-audio-seconds", "0"])
    assert ran == []


def test_message_size_reaches_uvicorn(tiny_run_dir, ran):
    assert cli.main(["serve", str(tiny_run_dir), "--no-warmup", "--no-cascade", "--max-message-bytes", "65536"]) == 0
    assert ran[0]["ws_max_size"] == 65536 + 4096


def test_without_cascade_flags_the_cascade_is_the_pair_the_model_was_trained_with(tiny_run_dir, real_pair_run,
                                                                                   real_models, ran):
    from aura_jax.config import load_config

    model = load_config(tiny_run_dir / "config.yaml").model  # a run directory: its config.yaml
    assert recorded_cascade(str(tiny_run_dir)) == (model.teacher, model.llm)
    export = real_pair_run[1]  # an export: its aura_config.json, and the config.yaml of the run it names
    assert [Path(p).resolve() for p in recorded_cascade(str(export))] == [
        real_models["whisper-tiny.en"].resolve(), real_models["smollm2-135m-instruct"].resolve()]
    assert recorded_cascade(str(export / "merged")) == recorded_cascade(str(export))
    assert cli.main(["serve", str(tiny_run_dir), "--no-warmup"]) == 0
    assert ran[0]["server"].cascade.description == f"Whisper {model.teacher} → {model.llm} (PyTorch)"


def test_a_recorded_directory_that_is_missing_is_one_line_naming_it(tiny_run_dir, tmp_path, ran):
    import yaml

    config = yaml.safe_load((tiny_run_dir / "config.yaml").read_text())
    config["model"]["teacher"] = str(tmp_path / "moved-whisper")
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "config.yaml").write_text(yaml.safe_dump(config))
    with pytest.raises(SystemExit) as e:
        cli.main(["serve", str(tmp_path / "run"), "--no-warmup"])
    assert str(e.value) == (f"aura-jax serve: the cascade's Whisper {tmp_path / 'moved-whisper'} (model.teacher of "
                            f"{tmp_path / 'run' / 'config.yaml'}) does not exist; pass --cascade WHISPER LLM to use "
                            "others, or --no-cascade")
    (tmp_path / "export").mkdir()  # an export whose run directory has gone: its teacher is unknown
    (tmp_path / "export" / "aura_config.json").write_text(json.dumps({"base_model": str(tmp_path),
                                                                      "run_dir": str(tmp_path / "gone")}))
    with pytest.raises(SystemExit, match=r"the run it was exported from \(.*gone\) has no config.yaml here, so its "
                                         r"Whisper teacher is unknown; pass --cascade WHISPER LLM"):
        cli.main(["serve", str(tmp_path / "export"), "--no-warmup"])
    assert ran == []


def test_a_tiny_run_serves_with_its_default_cascade_and_answers(tiny_run_dir, ran, capsys):
    """The README's smoke run, served (issue 43): its recorded cascade is the tiny random Whisper, whose
    decoder holds 64 positions; the cascade's transcript is capped to fit, so warm-up and a question pass."""
    import numpy as np
    from starlette.testclient import TestClient

    from aura_jax.serve.audio_input import encode_wav
    from aura_jax.serve.routes import make_app

    assert cli.main(["serve", str(tiny_run_dir), "--max-new-tokens", "4"]) == 0  # with the warm-up
    server = ran[0]["server"]
    assert server.cascade is not None and server.cascade_error is None
    assert server.cascade.asr_tokens == 64 - 1  # the tiny Whisper's max_target_positions less its 1-token prompt
    assert "could not start" not in capsys.readouterr().err
    wave = (np.random.default_rng(0).standard_normal(16000) * 0.1).astype(np.float32)
    with TestClient(make_app(server)) as client:
        r = client.post("/v1/audio/answer", content=encode_wav(wave))
        assert r.status_code == 200, r.text
        body = r.json()
        assert set(body) >= {"aura", "cascade"} and body["cascade"]["timing"]["tokens"] >= 1
        assert client.get("/health").json()["cascade_error"] is None


def test_a_cascade_that_cannot_start_is_one_line_and_the_server_runs_without_it(tiny_run_dir, tiny_qwen2_dir, ran,
                                                                                capsys):
    from starlette.testclient import TestClient

    from aura_jax.serve.routes import make_app

    broken = str(tiny_qwen2_dir)  # not a Whisper directory
    assert cli.main(["serve", str(tiny_run_dir), "--no-warmup", "--cascade", broken, str(tiny_qwen2_dir)]) == 0
    server = ran[0]["server"]
    err = [line for line in capsys.readouterr().err.splitlines() if "could not start" in line]
    assert server.cascade is None and len(err) == 1 and broken in err[0] and "Traceback" not in err[0]
    with TestClient(make_app(server)) as client:
        assert broken in client.get("/health").json()["cascade_error"]
        r = client.post("/v1/audio/answer?cascade=1", content=b"RIFF")
        assert r.status_code == 400 and "could not start" in r.text
