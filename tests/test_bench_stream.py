"""`aura-jax bench-infer --stream`: the delay from the end of speech to the first answer token, for
streaming AuRA, offline AuRA and the cascade, and the virtual clock that simulates arrival."""

import json
import time

import numpy as np
import pytest

from aura_jax.bench_stream import stream_latency
from aura_jax.cli import main
from aura_jax.export import export


class SlowStream:
    """A stream whose every feed costs `cost` seconds; finish 0.01 s, first token at its middle."""

    def __init__(self, cost):
        self.cost, self.first_token_time = cost, None

    def feed_audio(self, piece):
        time.sleep(self.cost)

    def finish(self):
        time.sleep(0.005)
        self.first_token_time = time.perf_counter()
        time.sleep(0.005)


@pytest.mark.parametrize("cost,expected", [(0.002, 0.0), (0.03, 0.07)])
def test_the_virtual_clock_charges_only_what_real_time_arrival_cannot_hide(cost, expected):
    lm = type("LM", (), {"stream": lambda self, *a, **k: SlowStream(cost)})()
    r = stream_latency(lm, np.zeros(1600, np.float32), "q", chunk_patches=1, piece_seconds=0.02, padded=False,
                       max_new_tokens=1, fixed=False, device="cpu")
    # 5 pieces arriving at 0.02, 0.04, ..., 0.10 s: a 0.002 s feed keeps up (0.002 s left at the end);
    # 0.03 s feeds run 0.02-0.05, 0.05-0.08, ..., 0.14-0.17: 0.07 s behind when the speech ends
    assert r["backlog_s"] == pytest.approx(expected, abs=0.015)
    assert r["ttft_s"] == pytest.approx(expected + 0.005, abs=0.015) and r["total_s"] > r["ttft_s"]


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
