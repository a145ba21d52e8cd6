"""The opt-in auxiliary CTC (`loss.ctc_weight`, Soundwave arXiv 2502.12900): off by default, and
then not even traced; on, it is torch's CTC over the LLM's vocabulary on the last adapted layer's
audio states, read through the frozen final norm and LM head, and it trains the adapters."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import torch
from flax import nnx
from tokenizers import Tokenizer

from aura_jax.models.layers import Trainable
from aura_jax.training import loss as loss_module
from aura_jax.training.loss import aura_loss, loss_normalizers
from aura_jax.training.train import make_grad_fn

PAPER_METRICS = {"loss", "ce", "target_tokens", "distill", "cos_l1", "cos_l2", "mse_l1", "mse_l2"}  # K = 2


def torch_ctc_reference(model, batch, layer_k_audio_states, end_of_turn: int) -> float:
    """Torch's CTC, from the raw batch and the model's numbers: labels = each audio row's CE target
    tokens (loss_mask on, in order) less the end-of-turn token that closes them; logits = the frozen
    final RMSNorm and tied LM head applied by torch to layer K's states at the audio positions; blank =
    the placeholder id; summed over the audio rows (only: the text-only row has no CTC) and divided
    by their label count."""
    ids, mask = np.asarray(batch["input_ids"]), np.asarray(batch["loss_mask"], bool)
    rows = [r for r in range(len(ids)) if (ids[r] == model.placeholder_id).any()]
    assert rows == [0, 1]
    labels = []
    for r in rows:
        targets = ids[r][mask[r]]
        assert targets[-1] == end_of_turn and end_of_turn not in targets[:-1]
        labels.append(torch.as_tensor(targets[:-1]))
    assert model.llm.lm_head is None  # the tiny LLM ties its head to the embedding
    h = torch.as_tensor(np.array(layer_k_audio_states))[rows]  # [rows, N, D]
    w, eps = torch.as_tensor(np.array(model.llm.norm.scale[...])), model.llm.norm.eps
    h = w * (h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + eps))
    logits = h @ torch.as_tensor(np.array(model.llm.embed_tokens.embedding[...])).T
    log_probs = torch.log_softmax(logits, dim=-1).transpose(0, 1)  # [N, rows, vocab]
    n = log_probs.shape[0]
    lengths = torch.as_tensor([len(lab) for lab in labels])
    assert n >= lengths.max() and n == 300  # 100 ms audio tokens: 30 s of them, for a few words
    total = torch.nn.functional.ctc_loss(log_probs, torch.cat(labels), torch.full((len(rows),), n), lengths,
                                         blank=model.placeholder_id, reduction="sum")
    return total.item() / lengths.sum().item()


def test_the_ctc_term_is_torchs_ctc_on_layer_k_read_by_the_frozen_head(make_aura, tiny_batch, tiny_qwen2_dir):
    model = make_aura("loss.distill_weight=0", "loss.ctc_weight=0.5")
    graphdef, state = nnx.split(model)

    @jax.jit
    def loss_and_layer_k(state, batch):
        m = nnx.merge(graphdef, state)
        out = m.student(batch["input_ids"], batch["attention_mask"], batch["loss_mask"], batch["audio_features"],
                        all_logits=False)
        return aura_loss(m, batch), out.audio_states[-1]

    (loss, m), layer_k = loss_and_layer_k(state, tiny_batch)
    end_of_turn = Tokenizer.from_file(str(tiny_qwen2_dir / "tokenizer.json")).token_to_id("<|im_end|>")
    reference = torch_ctc_reference(model, tiny_batch, layer_k, end_of_turn)
    np.testing.assert_allclose(float(m["ctc"]), reference, rtol=2e-5)
    np.testing.assert_allclose(float(loss), float(m["ce"]) + 0.5 * float(m["ctc"]), rtol=1e-6)


def test_accumulated_micro_batches_add_up_to_the_whole_batchs_ctc(make_aura, tiny_batch):
    """Each micro-batch divides by the whole batch's label count (`loss_normalizers`), as the CE does."""
    model = make_aura("loss.distill_weight=0", "loss.ctc_weight=1")
    graphdef, state = nnx.split(model)
    ctc = jax.jit(lambda state, batch, norms: aura_loss(nnx.merge(graphdef, state), batch, norms)[1]["ctc"])
    norms = loss_normalizers(tiny_batch, model.placeholder_id, model.config.audio.patch_frames)
    parts = [float(ctc(state, {k: v[r:r + 1] for k, v in tiny_batch.items()}, norms)) for r in range(3)]
    assert parts[0] > 0 and parts[1] > 0 and parts[2] == 0  # the third row has no audio
    np.testing.assert_allclose(sum(parts), float(ctc(state, tiny_batch, None)), rtol=1e-6)


def test_by_default_the_loss_is_the_papers_and_no_ctc_is_traced(make_aura, tiny_batch, monkeypatch):
    model = make_aura()
    assert model.config.loss.ctc_weight == 0.0

    def no_ctc(*args, **kwargs):
        raise AssertionError("the CTC was traced with loss.ctc_weight=0")

    monkeypatch.setattr(loss_module, "audio_ctc", no_ctc)
    monkeypatch.setattr(optax, "ctc_loss", no_ctc)
    graphdef, trainable, frozen = nnx.split(model, Trainable, ...)
    loss_fn = lambda t, f, b: aura_loss(nnx.merge(graphdef, t, f), b)
    # Tracing the gradient (whole batch, and 3 accumulated micro-batches) never reaches the CTC.
    (_, metrics), _ = jax.eval_shape(jax.value_and_grad(loss_fn, has_aux=True), trainable, frozen, tiny_batch)
    _, accumulated = jax.eval_shape(make_grad_fn(graphdef, grad_accum_steps=3), trainable, frozen, tiny_batch)
    assert set(metrics) == set(accumulated) == PAPER_METRICS
    loss, m = jax.jit(loss_fn)(trainable, frozen, tiny_batch)  # exactly ce_weight·CE + β·distill, nothing added
    assert float(loss) == float(np.float32(m["ce"]) * np.float32(1.0) + np.float32(1.0) * np.float32(m["distill"]))


def test_ctc_alone_trains_every_adapted_layer_and_the_patch_embedding(make_aura, tiny_batch):
    model = make_aura("loss.ce_weight=0", "loss.distill_weight=0", "loss.ctc_weight=1")
    graphdef, trainable, frozen = nnx.split(model, Trainable, ...)
    step = jax.jit(jax.value_and_grad(lambda t, f, b: aura_loss(nnx.merge(graphdef, t, f), b)[0]))
    before, grads = step(trainable, frozen, tiny_batch)
    flat = {".".join(map(str, p)): np.abs(np.asarray(v)).max() for p, v in nnx.to_flat_state(grads)}
    lora_b = [g for path, g in flat.items() if "lora_b" in path]
    assert len(lora_b) == 2 * 7 and all(g > 0 for g in lora_b)  # K = 2 layers × 7 projections
    assert all(g > 0 for path, g in flat.items() if "audio_embed" in path)
    # One small step down the gradient lowers the CTC.
    norm = optax.tree.norm(grads)
    after, _ = step(jax.tree.map(lambda x, g: x - 1e-2 * g / norm, trainable, grads), frozen, tiny_batch)
    assert float(after) < float(before)


def test_labels_are_the_targets_in_order_less_the_end_of_turn_token():
    targets = jnp.array([[5, 7, 9, 9, 2, 0], [3, 4, 2, 6, 6, 6], [1, 2, 3, 4, 5, 6]])
    mask = jnp.array([[0, 1, 1, 1, 1, 0], [1, 0, 1, 0, 0, 0], [1, 1, 1, 1, 1, 1]], bool)
    labels, paddings = loss_module.ctc_labels(targets, mask, jnp.array([True, True, False]))
    assert labels.tolist()[:2] == [[7, 9, 9, -1, -1, -1], [3, -1, -1, -1, -1, -1]]
    assert paddings.tolist() == [[0, 0, 0, 1, 1, 1], [0, 1, 1, 1, 1, 1], [1] * 6]  # the third row has no audio

