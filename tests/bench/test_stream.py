"""`aura-jax bench-infer --stream`: the delay from the end of speech to the first answer token, for
streaming AuRA, offline AuRA and the cascade, and the virtual clock that simulates arrival."""

import json

import numpy as np
import pytest

from aura_jax.bench.stream import stream_latency
from aura_jax.cli import main
from aura_jax.torch.export import export


class Clock:
    """A perf_counter that only moves when the fake stream below works."""

    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


class SlowStream:
    """A stream whose every feed costs `cost` seconds; finish costs 0.01 s, the first token at 0.005 s."""

    def __init__(self, clock, cost):
        self.clock, self.cost, self.first_token_time = clock, cost, None

    def feed_audio(self, piece):
        self.clock.now += self.cost

    def finish(self):
        self.clock.now += 0.005
        self.first_token_time = self.clock.now
        self.clock.now += 0.005


@pytest.mark.parametrize("cost,backlog", [(0.002, 0.002), (0.03, 0.07)])
def test_the_virtual_clock_charges_only_what_real_time_arrival_cannot_hide(cost, backlog, monkeypatch):
    import aura_jax.bench.stream as bench_stream

    clock = Clock()
    monkeypatch.setattr(bench_stream.time, "perf_counter", clock)
    lm = type("LM", (), {"stream": lambda self, *a, **k: SlowStream(clock, cost)})()
    r = stream_latency(lm, np.zeros(1600, np.float32), "q", chunk_patches=1, piece_seconds=0.02, padded=False,
                       max_new_tokens=1, fixed=False, device="cpu")
    monkeypatch.undo()
    # 5 pieces arriving at 0.02, 0.04, ..., 0.10 s. 0.002 s feeds keep up: only the last piece's own
    # work is left when the speech ends. 0.03 s feeds run 0.02-0.05, 0.05-0.08, ..., 0.14-0.17: 0.07 s behind.
    assert r["backlog_s"] == pytest.approx(backlog, abs=1e-9)
    assert r["ttft_s"] == pytest.approx(r["backlog_s"] + 0.005, abs=1e-9)
    assert r["total_s"] == pytest.approx(r["backlog_s"] + 0.01, abs=1e-9)


def test_bench_infer_stream_tiny_with_cascade(tiny_run_dir, tiny_qwen2_dir, tiny_whisper_dir, tmp_path, capsys):
    out = export(tiny_run_dir, tiny_qwen2_dir, tmp_path / "exp", dtype="float32")
    result_path = tmp_path / "stream.json"
    assert main(["bench-infer", str(out), "--stream", "--cascade", str(tiny_whisper_dir), str(tiny_qwen2_dir),
                 "--clip-seconds", "1,2,40", "--n", "1", "--warmup", "1", "--max-new-tokens", "3",
                 "--asr-tokens", "3", "--jax-run", str(tiny_run_dir), "--json", str(result_path)]) == 0
    r = json.loads(result_path.read_text())
    systems = {"AuRA streaming", "AuRA streaming + padding", "AuRA offline", "Cascade", "AuRA streaming (JAX)",
               "AuRA offline (JAX)"}
    assert {(row["system"], row["clip_s"]) for row in r["rows"]} == {(s, c) for s in systems for c in (1.0, 2.0)}
    for row in r["rows"]:  # (JAX offline times its first token in a separate 1-token run: no ordering)
        assert 0 < row["ttft_s"] and (row["ttft_s"] <= row["total_s"] or row["system"] == "AuRA offline (JAX)")
    assert r["skipped_clip_s"] == [40.0] and r["load_average"]["before"] is not None
    printed = capsys.readouterr().out
    assert "longer than the model's 30 s window" in printed
    assert "| AuRA streaming |" in printed and "| Cascade |" in printed and "after the end of speech" in printed

