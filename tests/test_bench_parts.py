"""`aura-jax bench-train --parts`: the step's time, part by part, in JAX and PyTorch."""

import json

import pytest

from aura_jax.bench_parts import PARTS, parts_of


def test_the_parts_are_differences_of_nested_programs_and_add_up_to_the_step():
    programs = {"student_forward": 1.0, "student_forward_backward": 3.0, "teacher_forward": 0.5,
                "loss_forward_backward": 4.5, "step": 4.75}
    parts = parts_of(programs)
    assert parts == {"student_forward": 1.0, "student_backward": 2.0, "teacher_forward": 0.5,
                     "alignment_distill": 1.0, "optimizer": 0.25}
    assert sum(parts.values()) == pytest.approx(programs["step"])


def test_cli_parts_on_the_tiny_models(tiny_aura_config, tmp_path, capsys):
    from aura_jax.cli import main

    out = tmp_path / "parts.json"
    assert main(["bench-train", "configs/tiny.yaml", *tiny_aura_config, "batch_size=2", "data.text_bucket=32",
                 "compilation_cache_dir=", "--parts", "--steps", "1", "--warmup", "1", "--json", str(out)]) == 0
    r = json.loads(out.read_text())
    for fw in ("jax", "torch"):
        assert all(r["programs"][fw][name] > 0 for name in r["programs"][fw])
        assert set(r["parts"][fw]) == set(PARTS)
    f = r["flops"]  # each nested program computes more than the one inside it
    assert 0 < f["student_forward"] < f["student_forward_backward"] < f["loss_forward_backward"] <= f["step"]
    assert f["teacher_forward"] > 0 and r["part_flops"]["alignment_distill"] > 0
    assert r["matmul"]["jax_gflops"] > 0 and r["matmul"]["torch_gflops"] > 0
    text = capsys.readouterr().out
    assert "| student_backward |" in text and "| whole step |" in text and "plain matmul" in text
