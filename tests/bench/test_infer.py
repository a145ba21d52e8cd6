"""`aura-jax bench-infer` on the tiny preset: AuRA and the cascade, timings and JSON."""

import json

from aura_jax.cli import main
from aura_jax.torch.export import export


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


def test_bad_arguments_are_one_line_errors_before_any_model_loads(tiny_run_dir, tmp_path, capsys):
    cases = [([str(tmp_path)], "not an aura-jax export"),
             ([str(tiny_run_dir)], "a training run directory"),
             ([str(tmp_path / "none")], "no such directory")]
    for argv, message in cases:
        assert main(["bench-infer", *argv, "--stream"]) == 2
        assert message in capsys.readouterr().err
    exp = tmp_path / "exp"
    exp.mkdir()
    (exp / "aura_config.json").write_text("{}")  # passes the cheap check; the flags below fail first
    for flags, message in ((["--stream", "--clip-seconds", "2,abc"], "--clip-seconds 2,abc: a comma-separated"),
                           (["--generation", "--batch-sizes", "0,8"], "--batch-sizes 0,8: every value"),
                           (["--generation", "--jax-run", str(tmp_path)], "not a training run directory"),
                           (["--floor"], "--floor bounds the --generation comparison"),
                           (["--n", "0"], "--n 0 must be >= 1"),
                           (["--against", "merged-in-memory", "--stream"], "--against is a benchmark of its own"),
                           (["--against", str(tmp_path)], "not an aura-jax export")):
        assert main(["bench-infer", str(exp), *flags]) == 2
        assert message in capsys.readouterr().err
