"""`aura-jax bench-infer --generation`: batched AuRA generation, JAX against transformers."""

import json

from aura_jax.cli import main
from aura_jax.export import export


def test_bench_infer_generation_jax_against_transformers(tiny_run_dir, tiny_qwen2_dir, tmp_path, capsys):
    out = export(tiny_run_dir, tiny_qwen2_dir, tmp_path / "exp", dtype="float32")
    result_path = tmp_path / "generation.json"
    assert main(["bench-infer", str(out), "--generation", "--jax-run", str(tiny_run_dir), "--batch-sizes", "1,2",
                 "--max-new-tokens", "3", "--n", "1", "--json", str(result_path)]) == 0
    r = json.loads(result_path.read_text())
    assert [x["batch"] for x in r["rows"]] == [1, 2]
    for x in r["rows"]:
        assert x["jax_samples_per_s"] > 0 and x["transformers_samples_per_s"] > 0
        assert x["same_first_row_tokens"]  # fp32 export of the same run: the same greedy tokens
    assert "| 2 |" in capsys.readouterr().out
    assert main(["bench-infer", str(out), "--generation"]) == 2  # no --jax-run: one-line error
