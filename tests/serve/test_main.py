"""`aura-jax serve`: this machine only unless another address is asked for, and then a warning says so;
limits are flags and must be positive."""

import pytest

from aura_jax import cli


@pytest.fixture
def ran(monkeypatch):
    import uvicorn

    calls = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: calls.append(kw))
    return calls


def test_the_default_binds_to_loopback_without_a_warning(tiny_run_dir, ran, capsys):
    assert cli.main(["serve", str(tiny_run_dir), "--no-warmup", "--max-streams", "2"]) == 0
    assert ran[0]["host"] == "127.0.0.1" and ran[0]["port"] == 8000
    assert "WARNING" not in capsys.readouterr().err


def test_another_host_must_be_asked_for_and_is_warned_about(tiny_run_dir, ran, capsys):
    assert cli.main(["serve", str(tiny_run_dir), "--no-warmup", "--host", "0.0.0.0", "--port", "9001"]) == 0
    assert ran[0]["host"] == "0.0.0.0" and ran[0]["port"] == 9001
    assert "WARNING: serving on 0.0.0.0" in capsys.readouterr().err


def test_limits_must_be_positive(tiny_run_dir, ran):
    with pytest.raises(SystemExit, match="--max-audio-seconds must be positive"):
        cli.main(["serve", str(tiny_run_dir), "--no-warmup", "--max-audio-seconds", "0"])
    assert ran == []


def test_message_size_reaches_uvicorn(tiny_run_dir, ran):
    assert cli.main(["serve", str(tiny_run_dir), "--no-warmup", "--max-message-bytes", "65536"]) == 0
    assert ran[0]["ws_max_size"] == 65536 + 4096
