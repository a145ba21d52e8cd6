"""JAX KV-cache generation equals transformers' greedy generate token for token."""

import jax.numpy as jnp
import numpy as np
import torch
from transformers import Qwen2ForCausalLM as TorchQwen2

from aura_jax.hf import from_pretrained
from aura_jax.inference.generate import generate
from aura_jax.models.lora import merge_lora


def left_padded(rng, lengths, vocab=512):
    t = max(lengths)
    ids = np.zeros((len(lengths), t), np.int64)
    mask = np.zeros((len(lengths), t), np.int64)
    for i, n in enumerate(lengths):
        ids[i, t - n:] = rng.integers(10, vocab, n)
        mask[i, t - n:] = 1
    return ids, mask


def test_greedy_equals_transformers_generate(tiny_qwen2_dir):
    ids, mask = left_padded(np.random.default_rng(0), [7, 4, 9])
    ref_model = TorchQwen2.from_pretrained(str(tiny_qwen2_dir), dtype=torch.float32).eval()
    with torch.no_grad():
        ref = ref_model.generate(torch.as_tensor(ids), attention_mask=torch.as_tensor(mask), max_new_tokens=12,
                                 do_sample=False, eos_token_id=None, pad_token_id=0)[:, ids.shape[1]:].numpy()
    ours = np.asarray(generate(from_pretrained(tiny_qwen2_dir), jnp.asarray(ids), jnp.asarray(mask),
                               max_new_tokens=12))
    np.testing.assert_array_equal(ours, ref)


def test_rows_stop_at_eos_independently(tiny_qwen2_dir):
    model = from_pretrained(tiny_qwen2_dir)
    ids, mask = left_padded(np.random.default_rng(1), [6, 6])
    free = np.asarray(generate(model, jnp.asarray(ids), jnp.asarray(mask), max_new_tokens=10))
    eos = int(free[0, 0])  # pretend row 0's first token is EOS
    stopped = np.asarray(generate(model, jnp.asarray(ids), jnp.asarray(mask), max_new_tokens=10,
                                  eos_token_id=[eos, 10_000], pad_token_id=-1))
    for row in range(2):
        hits = np.flatnonzero(free[row] == eos)
        end = hits[0] + 1 if len(hits) else 10
        np.testing.assert_array_equal(stopped[row, :end], free[row, :end])
        assert (stopped[row, end:] == -1).all()
    assert (stopped[0, 1:] == -1).all()


def test_sampling_is_seeded_and_top_p_tiny_is_greedy(tiny_qwen2_dir):
    model = from_pretrained(tiny_qwen2_dir)
    ids, mask = left_padded(np.random.default_rng(2), [5, 8])
    a = generate(model, jnp.asarray(ids), jnp.asarray(mask), max_new_tokens=6, temperature=20.0, seed=3)
    b = generate(model, jnp.asarray(ids), jnp.asarray(mask), max_new_tokens=6, temperature=20.0, seed=3)
    c = generate(model, jnp.asarray(ids), jnp.asarray(mask), max_new_tokens=6, temperature=20.0, seed=4)
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert not np.array_equal(np.asarray(a), np.asarray(c))
    greedy = generate(model, jnp.asarray(ids), jnp.asarray(mask), max_new_tokens=6)
    nucleus = generate(model, jnp.asarray(ids), jnp.asarray(mask), max_new_tokens=6, temperature=1.0, top_p=1e-6)
    np.testing.assert_array_equal(np.asarray(greedy), np.asarray(nucleus))


def test_aura_student_generation_equals_greedy_over_student_logits(make_aura, tiny_batch):
    from aura_jax.inference.generate import generate_aura

    model = make_aura()
    rows = slice(0, 2)  # the two speech rows, prompts only (cut before the answer)
    prompt_len = int(np.argmax(np.asarray(tiny_batch["loss_mask"][0])))
    ids = np.asarray(tiny_batch["input_ids"][rows, :prompt_len])
    mask = np.asarray(tiny_batch["attention_mask"][rows, :prompt_len])
    feats = tiny_batch["audio_features"][rows]
    new = np.asarray(generate_aura(model, ids, mask, feats, max_new_tokens=4))
    assert_greedy_over_student_logits(model, ids, feats, new)


def assert_greedy_over_student_logits(model, ids, feats, new):
    """Greedy by hand: the full student (no cache) over the prompt and all new tokens but the last.
    It is causal, so its logits at the prompt's last position and at new token i - 1 are those a run
    on the prompt and the first i new tokens ends with: one forward checks every step. (The audio
    placeholder expands into the audio tokens, so positions count from the end.)"""
    seq = np.concatenate([ids, new[:, :-1]], axis=1)
    out = model.student(jnp.asarray(seq), jnp.ones(seq.shape, bool), jnp.zeros(seq.shape, bool), feats)
    np.testing.assert_array_equal(np.argmax(np.asarray(out.logits[:, -new.shape[1]:]), -1), new)


def with_random_adapters(model, seed=0, size=0.3):
    """B is zero at initialisation, so a fresh model's adapters do nothing: give them weight."""
    from aura_jax.models.lora import lora_modules

    rng = np.random.default_rng(seed)
    for _, _, module in lora_modules(model.llm):
        module.lora_b.set_value(jnp.asarray(rng.normal(0, size, module.lora_b[...].shape), jnp.float32))
    return model


def test_generation_folds_float32_lora_and_keeps_the_student_s_tokens(make_aura, tiny_batch, monkeypatch):
    """Generation folds float32 adapters into the kernels (as export does): the same greedy tokens as
    the unmerged student's own logits, re-run step by step."""
    import aura_jax.inference.generate as gen

    model = with_random_adapters(make_aura())
    folds = []
    monkeypatch.setattr(gen, "merge_lora", lambda llm: folds.append(1) or merge_lora(llm))
    gen._decode.clear_cache()  # trace again, so the fold is seen (an earlier test compiled this shape)
    rows = slice(0, 2)
    prompt_len = int(np.argmax(np.asarray(tiny_batch["loss_mask"][0])))
    ids = np.asarray(tiny_batch["input_ids"][rows, :prompt_len])
    mask = np.asarray(tiny_batch["attention_mask"][rows, :prompt_len])
    feats = tiny_batch["audio_features"][rows]
    new = np.asarray(gen.generate_aura(model, ids, mask, feats, max_new_tokens=4))
    assert folds == [1]
    base = np.asarray(gen.generate_aura(make_aura(), ids, mask, feats, max_new_tokens=4))
    assert not np.array_equal(new, base)  # the adapters change the answer, so the check below has teeth
    assert_greedy_over_student_logits(model, ids, feats, new)


def test_fold_float32_lora_equals_the_unmerged_logits_and_leaves_bfloat16_alone(make_aura):
    from aura_jax.inference.generate import fold_float32_lora
    from aura_jax.models.lora import lora_modules

    model = with_random_adapters(make_aura(), seed=1)
    ids = jnp.asarray(np.random.default_rng(3).integers(10, 500, (2, 9)))
    before = np.asarray(model.llm(ids).logits)
    assert fold_float32_lora(model.llm) and not list(lora_modules(model.llm))
    np.testing.assert_allclose(np.asarray(model.llm(ids).logits), before, atol=1e-5, rtol=1e-5)
    assert not fold_float32_lora(model.llm)  # nothing left to fold

    half = with_random_adapters(make_aura(), seed=1)
    _, _, first = next(lora_modules(half.llm))
    first.base.kernel.set_value(first.base.kernel[...].astype(jnp.bfloat16))
    assert not fold_float32_lora(half.llm) and len(list(lora_modules(half.llm))) > 1


def test_bf16_generation_decodes_what_the_bf16_step_computes_weights_stored_or_not(make_aura, tiny_batch):
    """model.dot_dtype=bfloat16: generation rounds the frozen dot weights once (inside the call, or
    before it: eval and the trainer store them, `store_frozen_dot_weights`) and keeps the LoRA unmerged,
    so its greedy tokens are those of the student's own bf16 forward, and storing changes no token."""
    from aura_jax.inference.generate import generate_aura
    from aura_jax.models.layers import store_frozen_dot_weights

    rows = slice(0, 2)
    prompt_len = int(np.argmax(np.asarray(tiny_batch["loss_mask"][0])))
    ids = np.asarray(tiny_batch["input_ids"][rows, :prompt_len])
    mask = np.asarray(tiny_batch["attention_mask"][rows, :prompt_len])
    feats = tiny_batch["audio_features"][rows]
    model = with_random_adapters(make_aura("model.dot_dtype=bfloat16"), seed=2)
    new = np.asarray(generate_aura(model, ids, mask, feats, max_new_tokens=4))
    assert_greedy_over_student_logits(model, ids, feats, new)
    assert store_frozen_dot_weights(model) > 0
    np.testing.assert_array_equal(np.asarray(generate_aura(model, ids, mask, feats, max_new_tokens=4)), new)
    assert_greedy_over_student_logits(model, ids, feats, new)
