"""`aura-jax bench-profile`: time per HLO op of the compiled step, by kind and part."""

import json


def test_op_kinds_name_dots_by_their_operand_types_and_converts_apart():
    import jax
    import jax.numpy as jnp

    from aura_jax.bench.profile import op_kinds

    def program(x, w):
        y = jax.lax.dot(x.astype(jnp.bfloat16), w.astype(jnp.bfloat16), preferred_element_type=jnp.float32)
        return jnp.tanh(y @ w.T).sum()

    text = jax.jit(program).lower(jnp.ones((64, 32)), jnp.ones((32, 32))).compile().as_text()
    kinds = {k["kind"] for k in op_kinds(text).values()}
    assert "dot bf16×bf16→f32" in kinds and "dot f32×f32→f32" in kinds


def test_cli_profile_on_the_tiny_models(tiny_aura_config, tmp_path, capsys):
    from aura_jax.cli import main

    out = tmp_path / "profile.json"
    assert main(["bench-profile", "configs/tiny.yaml", *tiny_aura_config, "batch_size=2", "data.text_bucket=32",
                 "compilation_cache_dir=", "--steps", "1", "--warmup", "1", "--json", str(out)]) == 0
    r = json.loads(out.read_text())
    assert r["ops"] > 10 and r["op_total_s"] > 0 and r["wall_s"] > 0
    assert any(k.startswith("dot ") for k in r["by_kind"])
    assert {"student_forward", "student_backward", "teacher_forward", "alignment_distill", "optimizer"} <= set(
        r["by_part"])
    assert len(r["top"]) == 20
    text = capsys.readouterr().out
    assert "| kind | ops | s / step |" in text and "top 20 ops" in text
