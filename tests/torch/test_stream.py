"""The PyTorch stream (`AuraSpeechLM.stream`): chunked prefill into the transformers KV cache gives
the logits and the greedy answer of one-shot prefill of the spliced sequence."""

import numpy as np
import pytest
import torch

from aura_jax.export import export
from aura_jax.streaming import StreamError, realtime_chunks
from aura_jax.torch import AuraSpeechLM

PROMPT = "Transcribe the speech."


@pytest.fixture(scope="module")
def lm(tiny_run_dir, tiny_qwen2_dir, tmp_path_factory):
    out = export(tiny_run_dir, tiny_qwen2_dir, tmp_path_factory.mktemp("stream") / "merged", dtype="float32")
    return AuraSpeechLM.from_pretrained(out, dtype="float32")


def one_shot(lm, frames):
    """Logits over the spliced sequence and the greedy answer ids (transformers' generate)."""
    ids = lm.prompt_ids(PROMPT)
    embeds = lm._row(ids, frames)[None]
    with torch.no_grad():
        logits = lm.model(inputs_embeds=embeds).logits[0].float()
        out = lm.model.generate(inputs_embeds=embeds, attention_mask=torch.ones(embeds.shape[:2], dtype=torch.long),
                                max_new_tokens=8, do_sample=False, eos_token_id=lm.eos_token_ids,
                                pad_token_id=lm.pad_token_id)
    return logits, lm._trim(out[0], lm.eos_token_ids)


@pytest.mark.parametrize("chunk", [1, 7, 50])
def test_chunked_prefill_gives_one_shot_logits_and_answer(lm, chunk):
    frames = np.random.default_rng(chunk).standard_normal((lm.aura["audio"]["n_mels"], 130)).astype(np.float32)
    stream = lm.stream(PROMPT, chunk_patches=chunk, max_new_tokens=8, keep_logits=True)
    for i in range(0, 130, 11):  # pieces unrelated to patches (10 frames) or chunks
        stream.feed_features(frames[:, i:i + 11])
    answer = stream.finish()
    logits, ids = one_shot(lm, frames)
    torch.testing.assert_close(stream.logits(), logits, atol=1e-5, rtol=0)
    assert stream.answer_ids == ids and answer == lm.tokenizer.decode(ids, skip_special_tokens=True)
    assert stream.chunks_prefilled == -(-13 // chunk)  # 13 patches: 13 chunks, 2 (7 + 6), 1 (of 13)


def test_a_streamed_file_with_the_window_tail_answers_as_offline_generate(lm):
    rng = np.random.default_rng(0)
    wave = (rng.standard_normal(24000) * 0.1).astype(np.float32)
    wave[:160] *= 30  # the loudest moment first: the running-max clamp is offline's
    stream = lm.stream(PROMPT, chunk_patches=16, window_tail=True, max_new_tokens=8, keep_logits=True)
    answer = stream.run(realtime_chunks(wave, seconds=0.05, pace=False))
    torch.testing.assert_close(stream.logits(), lm.logits(wave, PROMPT)[0], atol=1e-5, rtol=0)
    assert answer == lm.generate(wave, PROMPT, max_new_tokens=8)
    assert stream.patches_prefilled == lm.aura["audio"]["num_frames"] // lm.aura["audio"]["patch_frames"]


def test_a_bidirectional_model_refuses_to_stream(lm):
    from aura_jax.torch.stream import TorchAuraStream

    bidirectional = type("Export", (), {"aura": dict(lm.aura, bidirectional_audio=True)})()
    with pytest.raises(StreamError, match="bidirectional"):
        TorchAuraStream(bidirectional, PROMPT)
