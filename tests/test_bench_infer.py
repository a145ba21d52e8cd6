"""`aura-jax bench-infer` on the tiny preset: AuRA and the cascade, timings and JSON."""

import json

from aura_jax.cli import main
from aura_jax.export import export


def test_bench_infer_tiny_with_cascade(tiny_run_dir, tiny_qwen2_dir, tiny_whisper_dir, tmp_path, capsys):
    out = export(tiny_run_dir, tiny_qwen2_dir, tmp_path / "exp", dtype="float32")
    result_path = tmp_path / "bench" / "results.json"
    assert main(["bench-infer", str(out), "--cascade", str(tiny_whisper_dir), str(tiny_qwen2_dir), "--n", "3",
                 "--warmup", "1", "--max-new-tokens", "4", "--asr-tokens", "4", "--json", str(result_path)]) == 0
    results = json.loads(result_path.read_text())
    assert set(results["systems"]) == {"AuRA", "Cascade"}
    for r in results["systems"].values():
        assert r["n"] == 3 and 0 < r["median_s"] <= r["p90_s"] and r["mean_s"] > 0
    table = capsys.readouterr().out
    assert "| AuRA |" in table and "| Cascade |" in table
