"""LoRA: W x + (α/r)·B A x on q,k,v,o,gate,up,down of the first K layers; B = 0
leaves the model bit-identical; merge folds the update in float32."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from flax import nnx

from aura_jax.hf import from_pretrained
from aura_jax.models.layers import Trainable
from aura_jax.models.lora import DEFAULT_TARGETS, LoRALinear, LoRAParam, apply_lora, lora_modules, merge_lora


def randomize_b(llm, seed=0, scale=0.05):
    key = jax.random.key(seed)
    for _, _, module in lora_modules(llm):
        key, sub = jax.random.split(key)
        module.lora_b.set_value(scale * jax.random.normal(sub, module.lora_b.shape))


@pytest.fixture
def ids():
    return jnp.asarray(np.random.default_rng(0).integers(0, 512, (2, 10)))


def test_zero_b_is_bit_identical_to_base(tiny_qwen2_dir, ids):
    base = from_pretrained(tiny_qwen2_dir)(ids).logits
    llm = from_pretrained(tiny_qwen2_dir)
    apply_lora(llm, 2, rank=8, alpha=16.0, rngs=nnx.Rngs(0))
    assert np.array_equal(np.asarray(llm(ids).logits), np.asarray(base))


def test_adapted_projections_and_parameter_kinds(tiny_qwen2_dir):
    llm = from_pretrained(tiny_qwen2_dir)
    apply_lora(llm, 3, rank=8, alpha=16.0, rngs=nnx.Rngs(0))
    adapted = {(i, name) for i, name, _ in lora_modules(llm)}
    assert adapted == {(i, t) for i in range(3) for t in DEFAULT_TARGETS}
    assert not isinstance(llm.layers[3].self_attn.q_proj, LoRALinear)
    lora_state = nnx.state(llm, LoRAParam)
    assert len(jax.tree.leaves(lora_state)) == 3 * 7 * 2
    assert issubclass(LoRAParam, Trainable)
    # The wrapped base weights stay frozen (plain Param, not Trainable).
    frozen = nnx.state(llm, nnx.All(nnx.Param, nnx.Not(Trainable)))
    assert any("base" in ".".join(map(str, p)) for p, _ in nnx.to_flat_state(frozen))


def test_initialisation_a_kaiming_uniform_b_zero(tiny_qwen2_dir):
    llm = from_pretrained(tiny_qwen2_dir)
    apply_lora(llm, 1, rank=16, alpha=32.0, rngs=nnx.Rngs(0))
    module = llm.layers[0].mlp.down_proj  # in_features = intermediate (128)
    a = np.asarray(module.lora_a[...])
    bound = 1 / np.sqrt(module.base.in_features)
    assert a.shape == (128, 16) and np.abs(a).max() <= bound and np.abs(a).max() > 0.9 * bound
    assert abs(a.std() - bound / np.sqrt(3)) < 0.1 * bound  # variance of U(-b, b)
    assert not np.asarray(module.lora_b[...]).any()
    assert module.scale == 2.0


def test_lora_linear_matches_torch_formula(tiny_qwen2_dir):
    llm = from_pretrained(tiny_qwen2_dir)
    apply_lora(llm, 1, rank=4, alpha=12.0, rngs=nnx.Rngs(1))
    randomize_b(llm)
    module = llm.layers[0].self_attn.q_proj
    x = np.random.default_rng(2).standard_normal((3, 64)).astype(np.float32)
    t = lambda v: torch.as_tensor(np.array(v))
    w, b = t(module.base.kernel[...]).T, t(module.base.bias[...])  # torch layout [out, in]
    a, bb = t(module.lora_a[...]).T, t(module.lora_b[...]).T  # PEFT: A [r, in], B [out, r]
    expected = torch.nn.functional.linear(t(x), w, b) + (12.0 / 4) * (t(x) @ a.T @ bb.T)
    np.testing.assert_allclose(np.asarray(module(jnp.asarray(x))), expected.numpy(), atol=1e-5)


def test_merge_equals_unmerged_forward(tiny_qwen2_dir, ids):
    llm = from_pretrained(tiny_qwen2_dir)
    apply_lora(llm, 2, rank=8, alpha=16.0, rngs=nnx.Rngs(0))
    randomize_b(llm)
    unmerged = np.asarray(llm(ids).logits)
    base = np.asarray(from_pretrained(tiny_qwen2_dir)(ids).logits)
    assert np.abs(unmerged - base).max() > 1e-3  # the adapters really do something
    merge_lora(llm)
    assert not list(lora_modules(llm)) and not jax.tree.leaves(nnx.state(llm, LoRAParam))
    np.testing.assert_allclose(np.asarray(llm(ids).logits), unmerged, atol=1e-5)


def test_merge_is_computed_in_float32_then_cast(tiny_qwen2_dir):
    llm = from_pretrained(tiny_qwen2_dir, dtype="bfloat16")
    apply_lora(llm, 1, rank=8, alpha=16.0, rngs=nnx.Rngs(0))
    randomize_b(llm, scale=0.01)
    module = llm.layers[0].mlp.up_proj
    w = np.asarray(module.base.kernel[...]).astype(np.float64)
    delta = 2.0 * np.asarray(module.lora_a[...], np.float64) @ np.asarray(module.lora_b[...], np.float64)
    expected = (w + delta).astype(np.float32).astype(jnp.bfloat16)
    merged = np.asarray(module.merged_kernel())
    assert merged.dtype == jnp.bfloat16
    assert np.array_equal(merged.astype(np.float32), expected.astype(np.float32))
    naive = (w.astype(jnp.bfloat16) + delta.astype(jnp.bfloat16)).astype(np.float32)  # adding in bf16
    assert not np.array_equal(naive, expected.astype(np.float32))


def test_bad_settings_fail_clearly(tiny_qwen2_dir):
    llm = from_pretrained(tiny_qwen2_dir)
    with pytest.raises(ValueError, match=r"lora.num_layers=5 is out of range: the LLM has 4 layers"):
        apply_lora(llm, 5, rank=8, alpha=16.0, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match=r"lora.targets: unknown projection 'qkv'"):
        apply_lora(llm, 1, rank=8, alpha=16.0, rngs=nnx.Rngs(0), targets=("qkv",))


# ---------------------------------------------------------------------------
# lora.audio_only (beyond the paper): adapters at the masked (audio) positions only
# ---------------------------------------------------------------------------
def adapted(tiny_qwen2_dir, audio_only, dtype="float32"):
    llm = from_pretrained(tiny_qwen2_dir, dtype=dtype)
    apply_lora(llm, 2, rank=8, alpha=16.0, rngs=nnx.Rngs(0), audio_only=audio_only)
    randomize_b(llm)
    return llm


def test_an_audio_only_projection_adds_the_update_exactly_where_the_mask_is_set(tiny_qwen2_dir):
    paper, only = (adapted(tiny_qwen2_dir, flag).layers[0].self_attn.q_proj for flag in (False, True))
    x = jnp.asarray(np.random.default_rng(2).standard_normal((2, 5, 64)).astype(np.float32))
    mask = jnp.asarray([[False, True, True, False, False], [True, False, False, False, True]])
    got, base, full = np.asarray(only(x, mask)), np.asarray(only.base(x)), np.asarray(paper(x))
    m = np.asarray(mask)
    assert np.array_equal(got[~m], base[~m])  # text rows: the base projection, bit for bit
    assert np.array_equal(got[m], full[m]) and np.abs(full[m] - base[m]).min() > 0  # audio rows: W x + s·B A x
    assert np.array_equal(np.asarray(only(x)), base)  # no mask given (text-only call, decoding): no update
    assert np.array_equal(np.asarray(paper(x, mask)), full)  # the paper's adapters act everywhere


def test_with_audio_only_adapters_the_text_positions_compute_the_base_model(tiny_qwen2_dir, ids):
    base = np.asarray(from_pretrained(tiny_qwen2_dir)(ids).logits)
    llm = adapted(tiny_qwen2_dir, True)
    assert np.array_equal(np.asarray(llm(ids).logits), base)  # no adapter mask: the base LLM
    mask = jnp.zeros(ids.shape, bool).at[:, 4:7].set(True)  # three "audio" tokens
    got = np.asarray(llm(ids, adapter_mask=mask).logits)
    assert np.array_equal(got[:, :4], base[:, :4])  # before the audio: untouched (causal)
    assert np.abs(got[:, 4:] - base[:, 4:]).max() > 1e-3  # from the audio on, the adapters matter
    everywhere = np.asarray(adapted(tiny_qwen2_dir, False)(ids).logits)
    np.testing.assert_array_equal(np.asarray(llm(ids, adapter_mask=jnp.ones(ids.shape, bool)).logits), everywhere)


def test_audio_only_adapters_refuse_to_merge_and_generation_does_not_fold_them(tiny_qwen2_dir):
    from aura_jax.inference.generate import fold_float32_lora
    from aura_jax.models.lora import AudioOnlyMergeError

    llm = adapted(tiny_qwen2_dir, True)
    with pytest.raises(AudioOnlyMergeError, match="lora.audio_only=true"):
        merge_lora(llm)
    assert not fold_float32_lora(llm) and len(list(lora_modules(llm))) == 14
    assert fold_float32_lora(adapted(tiny_qwen2_dir, False))
