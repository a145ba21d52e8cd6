"""aura-jax bench-train: the report, the FLOP formula against XLA's own count, the CLI."""

from __future__ import annotations

import json

import pytest

from aura_jax.tools.flops import StepShapes, known_peak_tflops, step_flops


@pytest.fixture(scope="module")
def config(tiny_aura_config):
    from aura_jax.config import load_config

    return load_config(None, [*tiny_aura_config, "batch_size=2", "data.text_bucket=32", "compilation_cache_dir="])


def test_formula_equals_the_matmuls_xla_runs_and_cost_analysis(config):
    """`step_flops` is exactly the sum of every dot/convolution in the lowered training step (the same
    jitted step `aura-jax train` compiles), and XLA's cost analysis of the compiled step is within 15 %
    above it: XLA also counts elementwise ops (norms, softmax, masks, RoPE, GELU/SiLU, the AdamW update,
    the alignment weights), which our count leaves out. At these tiny widths (d = 64) elementwise work
    is ~8 % of the total; at 7B widths it is far below 1 %."""
    import jax

    from aura_jax.bench.step import cost_analysis_flops, synthetic_batch
    from aura_jax.tools.flops import hlo_matmul_flops, shapes_from_config
    from aura_jax.training import sharding as shd
    from aura_jax.training.train import Trainer

    trainer = Trainer(config, log=lambda *a, **k: None)
    host = synthetic_batch(config, vocab_size=512, placeholder_id=511)
    batch = shd.global_batch(host, trainer.mesh, trainer.rules)
    ours = step_flops(shapes_from_config(config, {k: v.shape for k, v in batch.items()}))["total"]
    lowered = jax.jit(trainer.step_fn).lower(trainer.state, trainer.frozen, batch)
    matmuls = hlo_matmul_flops(lowered.compiler_ir("hlo").as_hlo_text())
    assert matmuls == pytest.approx(ours, rel=1e-9)
    xla = cost_analysis_flops(trainer.compiled_step(batch))
    assert xla is not None and 1.0 <= xla / ours <= 1.15, xla / ours


def test_backward_counts_every_layer_and_only_trainable_weight_gradients():
    base = dict(batch=2, text_len=16, audio_frames=100, teacher_segments=1, hidden=64, intermediate=128, layers=4,
                heads=4, kv_heads=2, head_dim=16, vocab=512, n_mels=8, patch_frames=10, lora_layers=2, lora_rank=8,
                lora_targets=("q_proj", "v_proj"))
    f = step_flops(StepShapes(**base))
    more_layers = step_flops(StepShapes(**{**base, "layers": 8}))
    # frozen layers above K still cost forward + activation gradients (3 passes minus weight grads = 2×)
    s = StepShapes(**base)
    per_layer_mm = 2 * s.batch * s.seq_len * (64 * 64 * 2 + 2 * 64 * 32 + 3 * 64 * 128)
    per_layer_attn = 4 * s.batch * s.seq_len ** 2 * 64
    assert more_layers["total"] - f["total"] == pytest.approx(4 * (2 * per_layer_mm + 3 * per_layer_attn))
    assert f["student_backward_weights"] == pytest.approx(f["lora_forward"] + 2 * s.batch * 10 * 8 * 10 * 64)
    assert f["teacher_forward"] == 0 and f["alignment"] == 0  # no teacher: CE only


def test_peak_table():
    assert known_peak_tflops("NVIDIA H100 80GB HBM3") == 989
    assert known_peak_tflops("TPU v5 lite") == 197 and known_peak_tflops("TPU v5") == 459
    assert known_peak_tflops("TPU v4") == 275 and known_peak_tflops("cpu") is None


def test_report_has_every_figure(config):
    from aura_jax.bench.train import format_report, run_bench

    r = run_bench(config, steps=2, warmup=1, peak_tflops=0.1, log=lambda *a, **k: None)
    for key in ("compile_s", "step_time_median_s", "step_time_mean_s", "examples_per_s", "audio_tokens_per_s",
                "text_tokens_per_s", "model_flops_per_step", "achieved_tflops", "mfu", "xla_flops_per_step"):
        assert r[key] is not None and r[key] > 0, key
    assert r["shapes"]["audio_tokens_per_row"] == 300 and r["shapes"]["seq_len"] == 32 + 300 - 1
    assert r["audio_tokens_per_s"] == pytest.approx(2 * 300 / r["step_time_median_s"])
    assert r["mfu"] == pytest.approx(r["achieved_tflops"] / 0.1)
    assert "MFU" in format_report(r)


def test_cli(config, tiny_aura_config, tmp_path, capsys):
    from aura_jax.cli import main

    out = tmp_path / "r.json"
    assert main(["bench-train", "configs/tiny.yaml", *tiny_aura_config, "batch_size=2", "data.text_bucket=32",
                 "--steps", "1", "--warmup", "0", "--torch-reference", "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert "MFU n/a" in text and "step time" in text  # CPU, no --peak-tflops
    report = json.loads(out.read_text())
    assert report["steps_timed"] == 1 and report["torch"]["steps_timed"] == 1 and report["interleaved"]
    assert f"ratio JAX time / PyTorch time: {report['ratio_jax_over_torch']:.3f}" in text
    assert "steps interleaved A B A B" in text and f"before {report['load_average']['before']}" in text
    assert report["loss_step0_rel_diff"] < 1e-4  # both sides' step 0 start from the same trainables


def test_the_two_frameworks_steps_alternate_after_both_warm_up():
    from aura_jax.bench.machine import interleaved_steps

    calls = []
    step = lambda name: (lambda: calls.append(name) or {"n": len(calls)})
    times_a, first_a, times_b, first_b = interleaved_steps(step("jax"), step("torch"), warmup=1, steps=3)
    assert calls == ["jax", "torch"] * 4
    assert len(times_a) == len(times_b) == 3 and first_a == {"n": 1} and first_b == {"n": 2}


def test_a_busy_machine_is_named_in_a_warning():
    from aura_jax.bench.machine import load_warning

    assert load_warning([0.3, 0.9, 1.5], 2) is None  # idle enough (1-minute average below cores / 4)
    assert "load average 1.80 on 2 cores" in load_warning([1.8, 1.0, 0.5], 2)
    assert load_warning(None, 2) is None


def test_formula_follows_a_short_teacher_window(tiny_aura_config):
    """audio.teacher_frames=600: the count is still exactly the matmuls the lowered step runs."""
    import jax

    from aura_jax.bench.step import synthetic_batch
    from aura_jax.config import load_config
    from aura_jax.tools.flops import hlo_matmul_flops, shapes_from_config
    from aura_jax.training import sharding as shd
    from aura_jax.training.train import Trainer

    config = load_config(None, [*tiny_aura_config, "batch_size=2", "data.text_bucket=32", "compilation_cache_dir=",
                                "audio.teacher_frames=600"])
    trainer = Trainer(config, log=lambda *a, **k: None)
    batch = shd.global_batch(synthetic_batch(config, vocab_size=512, placeholder_id=511), trainer.mesh, trainer.rules)
    assert batch["teacher_features"].shape[-1] == 600
    ours = step_flops(shapes_from_config(config, {k: v.shape for k, v in batch.items()}))["total"]
    lowered = jax.jit(trainer.step_fn).lower(trainer.state, trainer.frozen, batch)
    assert hlo_matmul_flops(lowered.compiler_ir("hlo").as_hlo_text()) == pytest.approx(ours, rel=1e-9)
