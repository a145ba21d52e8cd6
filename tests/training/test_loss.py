"""The AuRA objective and where its gradients go."""

import jax
import jax.numpy as jnp
import numpy as np
import torch
from flax import nnx

from aura_jax.models.layers import Trainable
from aura_jax.models.lora import lora_modules
from aura_jax.training.loss import aura_loss, cross_entropy, student_cross_entropy


def test_cross_entropy_matches_torch_on_shifted_targets():
    rng = np.random.default_rng(0)
    logits = rng.standard_normal((2, 6, 11)).astype(np.float32)
    targets = rng.integers(0, 11, (2, 6))
    mask = np.array([[0, 0, 1, 1, 1, 0], [0, 1, 0, 0, 1, 1]], bool)
    ce, count = cross_entropy(jnp.asarray(logits), jnp.asarray(targets), jnp.asarray(mask))
    labels = np.where(mask, targets, -100)[:, 1:]  # position j predicts token j + 1
    ref = torch.nn.functional.cross_entropy(torch.as_tensor(logits[:, :-1]).reshape(-1, 11),
                                            torch.as_tensor(labels).reshape(-1), ignore_index=-100)
    assert int(count) == int((labels != -100).sum()) == 6
    np.testing.assert_allclose(float(ce), ref.item(), rtol=1e-6)


def test_total_is_ce_plus_beta_times_distill(make_aura, tiny_batch):
    loss, m = aura_loss(make_aura("loss.distill_weight=0.5", "loss.ce_weight=2.0"), tiny_batch)
    assert float(m["distill"]) > 0 and float(m["ce"]) > 0
    np.testing.assert_allclose(float(loss), 2.0 * float(m["ce"]) + 0.5 * float(m["distill"]), rtol=1e-6)
    k = 2
    per_layer = [float(m[f"cos_l{l}"]) + float(m[f"mse_l{l}"]) for l in range(1, k + 1)]
    np.testing.assert_allclose(float(m["distill"]), np.mean(per_layer), rtol=1e-5)


def test_cosine_only_and_mse_only(make_aura, tiny_batch):
    _, both = aura_loss(make_aura(), tiny_batch)
    _, cos = aura_loss(make_aura("loss.lambda_mse=0"), tiny_batch)
    _, mse = aura_loss(make_aura("loss.lambda_cos=0"), tiny_batch)
    np.testing.assert_allclose(float(cos["distill"]), np.mean([float(both["cos_l1"]), float(both["cos_l2"])]), rtol=1e-5)
    np.testing.assert_allclose(float(mse["distill"]), np.mean([float(both["mse_l1"]), float(both["mse_l2"])]), rtol=1e-5)


def test_ce_only_runs_no_teacher(make_aura, tiny_batch):
    model = make_aura("loss.distill_weight=0")
    assert model.teacher is None
    loss, m = aura_loss(model, tiny_batch)
    assert float(m["distill"]) == 0.0 and float(loss) == float(m["ce"])


def test_text_only_rows_contribute_no_distillation(make_aura, tiny_batch):
    model = make_aura()
    _, before = aura_loss(model, tiny_batch)
    noisy = dict(tiny_batch, audio_features=tiny_batch["audio_features"].at[2].add(3.0))  # row 2 is text-only
    _, after = aura_loss(model, noisy)
    assert float(after["distill"]) == float(before["distill"])
    text_only = {k: v[2:] for k, v in tiny_batch.items()}
    _, alone = aura_loss(model, text_only)
    assert float(alone["distill"]) == 0.0


def test_audio_and_prompt_positions_are_never_ce_targets(make_aura, tiny_batch):
    out = make_aura().student(tiny_batch["input_ids"], tiny_batch["attention_mask"], tiny_batch["loss_mask"],
                              tiny_batch["audio_features"])
    sp = out.spliced
    assert not np.any(np.asarray(sp.loss_mask & sp.audio_mask))
    # Exactly the answer tokens of the original rows remain targets.
    assert int(np.asarray(sp.loss_mask).sum()) == int(np.asarray(tiny_batch["loss_mask"]).sum())


def test_ce_from_the_text_predicting_positions_equals_ce_over_every_position(make_aura, tiny_batch):
    """The loss runs the LM head only at the T − 1 positions before each input token's slot. Every
    real token after the first is made a target here (the one right after the audio too, which the
    last audio token predicts), and the CE, its count and its gradient equal those of the full logits."""
    model = make_aura("loss.distill_weight=0")
    ids = np.asarray(tiny_batch["input_ids"])
    everything = np.asarray(tiny_batch["attention_mask"], bool) & (ids != model.placeholder_id)
    batch = dict(tiny_batch, loss_mask=jnp.asarray(everything))
    graphdef, trainable, frozen = nnx.split(model, Trainable, ...)

    def full(t):
        out = nnx.merge(graphdef, t, frozen).student(batch["input_ids"], batch["attention_mask"],
                                                      batch["loss_mask"], batch["audio_features"])
        return cross_entropy(out.logits, out.spliced.targets, out.spliced.loss_mask)

    def at_targets(t):
        out, ce, count = student_cross_entropy(nnx.merge(graphdef, t, frozen), batch)
        return ce, count, out.logits

    (ce_full, n_full), (ce_kept, n_kept, _) = jax.jit(full)(trainable), jax.jit(at_targets)(trainable)
    b, t = ids.shape
    assert jax.eval_shape(at_targets, trainable)[2].shape == (b, t - 1, model.llm.config.vocab_size)
    after_audio = np.argmax(ids == model.placeholder_id, axis=1) + 1
    assert everything[np.arange(b), after_audio][np.any(ids == model.placeholder_id, axis=1)].all()
    assert int(n_kept) == int(n_full) == int(everything[:, 1:].sum())
    np.testing.assert_allclose(float(ce_kept), float(ce_full), rtol=1e-6)
    g_full = jax.jit(jax.grad(lambda t: full(t)[0]))(trainable)
    g_kept = jax.jit(jax.grad(lambda t: at_targets(t)[0]))(trainable)
    for a, c in zip(jax.tree.leaves(g_kept), jax.tree.leaves(g_full)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(c), rtol=1e-5, atol=1e-7)


def trainable_grads(model, batch):
    graphdef, trainable, frozen = nnx.split(model, Trainable, ...)

    def loss_fn(trainable, frozen, batch):
        return aura_loss(nnx.merge(graphdef, trainable, frozen), batch)[0]

    return trainable, jax.jit(jax.grad(loss_fn))(trainable, frozen, batch)


def test_gradients_reach_exactly_the_trainable_parts(make_aura, tiny_batch):
    model = make_aura()
    trainable, grads = trainable_grads(model, tiny_batch)
    flat = {".".join(map(str, p)): np.asarray(v) for p, v in nnx.to_flat_state(grads)}
    frozen_paths = {".".join(map(str, p)) for p, _ in nnx.to_flat_state(nnx.state(model, nnx.Not(Trainable)))}
    assert flat and not (set(flat) & frozen_paths)  # no frozen tensor is differentiated
    groups = {"audio_embed": [], "heads": [], "lora_a": [], "lora_b": []}
    for path, g in flat.items():
        key = next(k for k in groups if k in path)
        groups[key].append(np.abs(g).max())
    assert all(m > 0 for m in groups["audio_embed"]), "patch embedding must learn"
    assert all(m > 0 for m in groups["heads"]), "every head must learn"
    assert all(m > 0 for m in groups["lora_b"]), "B's gradient is non-zero at init"
    assert all(m == 0 for m in groups["lora_a"]), "A's gradient is zero while B = 0"
    assert len(groups["lora_a"]) == len(groups["lora_b"]) == 2 * 7


def test_gradient_matches_finite_differences(make_aura, tiny_batch):
    model = make_aura()
    key = jax.random.key(0)
    for _, _, module in lora_modules(model.llm):  # non-zero B so A's gradient is exercised too
        key, sub = jax.random.split(key)
        module.lora_b.set_value(0.05 * jax.random.normal(sub, module.lora_b.shape))
    graphdef, trainable, frozen = nnx.split(model, Trainable, ...)
    # Frozen weights and the batch are arguments, not closures (else XLA constant-folds the teacher).
    jitted = jax.jit(lambda t, f, b: aura_loss(nnx.merge(graphdef, t, f), b)[0])
    loss_fn = lambda t: jitted(t, frozen, tiny_batch)
    grads = jax.jit(jax.grad(lambda t, f, b: aura_loss(nnx.merge(graphdef, t, f), b)[0]))(trainable, frozen, tiny_batch)
    leaves, treedef = jax.tree.flatten(trainable)
    rng = np.random.default_rng(0)
    direction = jax.tree.unflatten(treedef, [jnp.asarray(rng.standard_normal(x.shape), jnp.float32) for x in leaves])
    analytic = sum(float(jnp.vdot(g, d)) for g, d in zip(jax.tree.leaves(grads), jax.tree.leaves(direction)))
    eps = 1e-3
    shift = lambda s: jax.tree.map(lambda x, d: x + s * d, trainable, direction)
    numeric = (float(loss_fn(shift(eps))) - float(loss_fn(shift(-eps)))) / (2 * eps)
    assert analytic != 0
    np.testing.assert_allclose(numeric, analytic, rtol=5e-3)
