"""The cascade answers a batch at a time (eval's batches) exactly as it answers one clip at a time:
Whisper tiny.en's transcripts and SmolLM2's greedy answers, on the real pair."""

import pytest

QUESTIONS = ["What is the capital of France?", "How many legs does a spider have?", "Is ice cold?"]


@pytest.fixture(scope="module")
def cascade(real_models):
    import torch

    from aura_jax.torch.systems import CascadeSystem

    return CascadeSystem(str(real_models["whisper-tiny.en"]), str(real_models["smollm2-135m-instruct"]), "cpu",
                         torch.float32)


def test_batched_transcripts_and_answers_equal_one_at_a_time(cascade):
    from aura_jax.synth import espeak_available, speak_with

    if not espeak_available():
        pytest.skip("espeak-ng / flite are not installed")
    waves = [speak_with("flite", "slt", q) for q in QUESTIONS]
    one = [cascade.transcribe(w, 32, fixed=False) for w in waves]
    batch = cascade.transcribe_batch(waves, 32)
    assert batch == one and "spider" in one[1].lower()
    instruction = "Give a simple one sentence answer."
    answers = cascade.answer_batch(one, instruction, 24)
    assert answers == [cascade.answer(t, instruction, 24) for t in one]
    assert "paris" in answers[0].lower()
