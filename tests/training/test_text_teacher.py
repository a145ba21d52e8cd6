"""The opt-in text teacher (`loss.text_teacher_weight`; DiVA arXiv 2410.02678, BLSP-KD 2405.19041): the
frozen LLM reads the spoken words as text where the audio goes, and at every target token the student,
which hears them, learns its next-token distribution (KL). Off by default, and then not even traced."""

import jax
import numpy as np
import pytest
import torch
from flax import nnx

from aura_jax.config import ConfigError, load_config
from aura_jax.data.examples import BatchMaker, tokenize
from aura_jax.data.sources import AudioRef, Row, asr_messages, spoken_question_messages
from aura_jax.models.layers import Trainable
from aura_jax.models.lora import lora_modules
from aura_jax.synth import synthesize
from aura_jax.tokenizer import ChatTokenizer
from aura_jax.training import loss as loss_module
from aura_jax.training.loss import aura_loss, loss_normalizers
from aura_jax.training.train import make_grad_fn

TEACHER = ("lora.audio_only=true", "loss.distill_weight=0")


@pytest.fixture(scope="module")
def rows(tiny_aura_config):
    """An ASR clip, a spoken question with its answer, and a text QA pair."""
    prompt = load_config(None, tiny_aura_config).prompt
    clip = lambda text: AudioRef(key=text, name=text, array=synthesize(text))
    return [Row("asr", "speech", asr_messages(prompt, "one two three"), "asr", "one two three", clip("one two three")),
            Row("question", "speech", spoken_question_messages(prompt, "Answer briefly.", "It is red."), "q",
                "what colour is a tomato", clip("what colour is a tomato")),
            Row("text", "text", [{"role": "user", "content": "What is two plus two?"},
                                 {"role": "assistant", "content": "Four."}], "t", "Four.")]


@pytest.fixture(scope="module")
def tokenizer(tiny_qwen2_dir, tiny_aura_config):
    return ChatTokenizer.from_pretrained(str(tiny_qwen2_dir), audio_token=load_config(None, tiny_aura_config).prompt.audio_token)


@pytest.fixture(scope="module")
def teacher_batch(rows, tokenizer):
    examples = [tokenize(tokenizer, row, 128, text_teacher=True) for row in rows]
    make = BatchMaker(examples, n_mels=128, text_bucket=8, teacher_segments=1, pad_id=tokenizer.pad_token_id,
                      text_teacher=True)
    batch = make((300, np.arange(3)))
    batch.pop("example_index")
    return batch


def test_the_teacher_reads_the_spoken_words_where_the_audio_goes_with_the_same_targets(rows, tokenizer):
    for row in rows[:2]:
        ex = tokenize(tokenizer, row, 128, text_teacher=True)
        assert tokenizer.audio_token_id in ex.ids and tokenizer.audio_token_id not in ex.teacher_ids
        text = tokenizer.decode(ex.teacher_ids.tolist(), skip_special_tokens=False)
        heard = tokenizer.decode(ex.ids.tolist(), skip_special_tokens=False)
        assert row.text in text and text.replace(row.text, tokenizer.audio_token, 1) == heard
        assert ex.teacher_ids[ex.teacher_mask].tolist() == ex.ids[ex.loss_mask].tolist()
    text_row = tokenize(tokenizer, rows[2], 128, text_teacher=True)
    assert len(text_row.teacher_ids) == 0 and len(text_row.teacher_mask) == 0  # no teacher targets
    assert tokenize(tokenizer, rows[0], 128).teacher_ids is None  # off by default


def test_a_teacher_conversation_with_other_targets_is_a_counted_skip(rows, tokenizer, monkeypatch):
    from aura_jax.data import examples

    row = rows[0]
    assert tokenize(tokenizer, row, 20, text_teacher=True) == "too_long"
    # (a chat template that rendered the assistant turn differently after other user text would do this)
    other = lambda row, token: [m if m["role"] != "assistant" else dict(m, content="four five") for m in row.messages]
    monkeypatch.setattr(examples, "text_teacher_messages", other)
    assert tokenize(tokenizer, row, 128, text_teacher=True) == "text_teacher_mismatch"


def _kl_reference(model, batch, tiny_qwen2_dir) -> float:
    """transformers' Qwen2 (the frozen LLM, no adapter) on the teacher's conversations; the student's
    logits at every spliced target position; torch's KL(teacher ‖ student) summed over targets / count."""
    from transformers import AutoModelForCausalLM

    hf = AutoModelForCausalLM.from_pretrained(str(tiny_qwen2_dir), dtype=torch.float32).eval()
    ids, attn = (torch.as_tensor(np.asarray(batch[k])) for k in ("text_teacher_ids", "text_teacher_attention_mask"))
    with torch.no_grad():
        teacher = hf(input_ids=ids.long(), attention_mask=attn.long()).logits
    out = jax.jit(lambda b: model.student(b["input_ids"], b["attention_mask"], b["loss_mask"], b["audio_features"],
                                          all_logits=True))(batch)
    student = torch.as_tensor(np.asarray(out.logits))
    s_mask, t_mask = np.asarray(out.spliced.loss_mask), np.asarray(batch["text_teacher_loss_mask"])
    total, count = 0.0, 0
    for r in range(len(t_mask)):
        t_at = [j - 1 for j in range(1, t_mask.shape[1]) if t_mask[r, j]]  # positions predicting a target
        s_at = [j - 1 for j in range(1, s_mask.shape[1]) if s_mask[r, j]]
        if not t_at:
            continue
        assert len(t_at) == len(s_at)
        log_t = torch.log_softmax(teacher[r, t_at], -1)
        log_s = torch.log_softmax(student[r, s_at], -1)
        total += torch.nn.functional.kl_div(log_s, log_t, log_target=True, reduction="sum").item()
        count += len(t_at)
    assert count > 0
    return total / count


def _with_trained_adapters(model):
    """Non-zero LoRA B: were the adapters acting on the teacher's text, its logits would move."""
    for i, (layer, name, module) in enumerate(lora_modules(model.llm)):
        module.lora_b[...] = 1.0 * jax.random.normal(jax.random.PRNGKey(i), module.lora_b[...].shape)
    return model


def test_text_kl_is_torchs_kl_from_the_frozen_llm_reading_to_the_student_hearing(make_aura, teacher_batch,
                                                                                  tiny_qwen2_dir):
    model = _with_trained_adapters(make_aura(*TEACHER, "loss.text_teacher_weight=0.5"))
    loss, m = jax.jit(lambda b: aura_loss(model, b))(teacher_batch)
    reference = _kl_reference(model, teacher_batch, tiny_qwen2_dir)
    assert reference > 0.01  # the student hears, the teacher reads: they differ
    print(f"KL {float(m['text_kl'])}, reference {reference}")
    np.testing.assert_allclose(float(m["text_kl"]), reference, rtol=1e-4)
    np.testing.assert_allclose(float(loss), float(m["ce"]) + 0.5 * float(m["text_kl"]), rtol=1e-6)


def test_accumulated_micro_batches_add_up_to_the_whole_batchs_kl(make_aura, teacher_batch):
    model = _with_trained_adapters(make_aura(*TEACHER, "loss.text_teacher_weight=1"))
    graphdef, state = nnx.split(model)
    kl = jax.jit(lambda state, batch, norms: aura_loss(nnx.merge(graphdef, state), batch, norms)[1]["text_kl"])
    norms = loss_normalizers(teacher_batch, model.placeholder_id, model.config.audio.patch_frames)
    parts = [float(kl(state, {k: v[r:r + 1] for k, v in teacher_batch.items()}, norms)) for r in range(3)]
    assert parts[0] > 0 and parts[1] > 0 and parts[2] == 0  # the text row has no teacher targets
    np.testing.assert_allclose(sum(parts), float(kl(state, teacher_batch, None)), rtol=1e-5)


def test_the_kl_alone_trains_the_adapters_and_the_patch_embedding(make_aura, teacher_batch):
    model = make_aura(*TEACHER, "loss.ce_weight=0", "loss.text_teacher_weight=1")
    graphdef, trainable, frozen = nnx.split(model, Trainable, ...)
    step = jax.jit(jax.value_and_grad(lambda t, f, b: aura_loss(nnx.merge(graphdef, t, f), b)[0]))
    before, grads = step(trainable, frozen, teacher_batch)
    flat = {".".join(map(str, p)): np.abs(np.asarray(v)).max() for p, v in nnx.to_flat_state(grads)}
    assert all(g > 0 for path, g in flat.items() if "lora_b" in path or "audio_embed" in path)
    after, _ = step(jax.tree.map(lambda x, g: x - 1e-2 * g / np.sqrt(sum(float((g ** 2).sum()) for g in
                                                                            jax.tree.leaves(grads))),
                                 trainable, grads), frozen, teacher_batch)
    assert float(after) < float(before)


def test_by_default_no_teacher_is_traced_and_the_batch_has_no_teacher_rows(make_aura, tiny_batch, rows, tokenizer,
                                                                           monkeypatch):
    model = make_aura()
    assert model.config.loss.text_teacher_weight == 0.0
    monkeypatch.setattr(loss_module, "text_teacher_kl", lambda *a, **k: pytest.fail("the text teacher was traced"))
    graphdef, trainable, frozen = nnx.split(model, Trainable, ...)
    _, metrics = jax.eval_shape(make_grad_fn(graphdef, grad_accum_steps=3), trainable, frozen, tiny_batch)
    assert "text_kl" not in metrics
    examples = [tokenize(tokenizer, row, 128) for row in rows]
    batch = BatchMaker(examples, n_mels=128, text_bucket=8, teacher_segments=1, pad_id=0)((300, np.arange(3)))
    assert not any(k.startswith("text_teacher") for k in batch)


@pytest.mark.parametrize("overrides, message", [
    (("loss.text_teacher_weight=0.5",), "needs lora.audio_only=true"),
    (("lora.audio_only=true", "loss.text_teacher_weight=-1"), "must be a finite number >= 0"),
    (("lora.audio_only=true", "loss.text_teacher_weight=.nan"), "must be a finite number >= 0"),
])
def test_the_config_refuses_a_teacher_it_cannot_be(tiny_aura_config, overrides, message):
    with pytest.raises(ConfigError, match=message):
        load_config(None, [*tiny_aura_config, *overrides])
