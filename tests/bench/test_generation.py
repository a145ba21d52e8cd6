"""`aura-jax bench-infer --generation`: batched AuRA generation, JAX against transformers."""

import json

from aura_jax.cli import main
from aura_jax.torch.export import export


def test_bench_infer_generation_jax_against_transformers(tiny_run_dir, tiny_qwen2_dir, tmp_path, capsys):
    out = export(tiny_run_dir, tiny_qwen2_dir, tmp_path / "exp", dtype="float32")
    result_path = tmp_path / "generation.json"
    assert main(["bench-infer", str(out), "--generation", "--jax-run", str(tiny_run_dir), "--batch-sizes", "1,2",
                 "--max-new-tokens", "3", "--n", "1", "--floor", "--json", str(result_path)]) == 0
    r = json.loads(result_path.read_text())
    assert [x["batch"] for x in r["rows"]] == [1, 2]
    for x in r["rows"]:
        assert x["jax_samples_per_s"] > 0 and x["transformers_samples_per_s"] > 0
        assert x["same_first_row_tokens"]  # fp32 export of the same run: the same greedy tokens
        # --floor: a lower bound, so below what either side measured, prefill and whole
        f = x["floor"]
        assert 0 < f["prefill_s"] <= min(x["jax_prefill_s"], x["transformers_prefill_s"])
        # (the read-bandwidth and matrix-vector floors come from two measured rates: no order between them)
        assert max(f["total_s"], f["total_s_matvec"]) <= min(x["jax_s"], x["transformers_s"])
        assert x["max_speedup"] >= x["jax_speedup"]
        assert x["rates"]["matmul_gflops"]["best"] == max(x["rates"]["matmul_gflops"]["jax"],
                                                          x["rates"]["matmul_gflops"]["torch"])
    text = capsys.readouterr().out
    assert "| 2 |" in text and "most speed-up over transformers" in text
    assert main(["bench-infer", str(out), "--generation"]) == 2  # no --jax-run: one-line error


def test_floor_counts_every_weight_a_forward_multiplies_by(tiny_qwen2_dir):
    """The floor's weight count against the PyTorch model's own parameters (2-D weights but the
    input embedding; the LM head counted once even when it is the tied embedding)."""
    import torch
    from transformers import AutoModelForCausalLM

    from aura_jax.bench.generation import generation_floor, qwen2_weight_counts

    model = AutoModelForCausalLM.from_pretrained(str(tiny_qwen2_dir), dtype=torch.float32)
    config = model.config.to_dict()
    counts = qwen2_weight_counts(config)
    layers = sum(p.numel() for name, p in model.named_parameters() if p.ndim == 2 and ".layers." in name)
    assert counts == {"layers": layers, "lm_head": model.lm_head.weight.numel()}
    rates = {"matmul_gflops": {"best": 100.0}, "read_gbs": {"best": 20.0}, "matvec_gbs": {"best": 10.0}}
    f = generation_floor(counts, 8, 300, 32, rates)
    flops = 2 * 8 * 300 * layers + 2 * 8 * model.lm_head.weight.numel()
    assert f["prefill_s"] == flops / 100e9
    assert f["decode_s"] == 31 * 4 * (layers + model.lm_head.weight.numel()) / 20e9
    assert f["decode_s_matvec"] == 2 * f["decode_s"] and f["total_s"] == f["prefill_s"] + f["decode_s"]
