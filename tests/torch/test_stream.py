"""The PyTorch stream (`AuraSpeechLM.stream`): chunked prefill into the transformers KV cache gives
the logits and the greedy answer of one-shot prefill of the spliced sequence."""

import time

import numpy as np
import pytest
import torch

from aura_jax.inference.streaming import StreamError, realtime_chunks
from aura_jax.torch import AuraSpeechLM
from aura_jax.torch.export import export

PROMPT = "Transcribe the speech."


@pytest.fixture(scope="module")
def exported(tiny_run_dir, tiny_qwen2_dir, tmp_path_factory):
    return export(tiny_run_dir, tiny_qwen2_dir, tmp_path_factory.mktemp("stream") / "merged", dtype="float32")


@pytest.fixture(scope="module")
def lm(exported):
    return AuraSpeechLM.from_pretrained(exported, dtype="float32")


def loud_first(seconds, seed=0):
    """Noise whose loudest moment is its first 10 ms: the running-max clamp is then offline's."""
    wave = (np.random.default_rng(seed).standard_normal(int(seconds * 16000)) * 0.1).astype(np.float32)
    wave[:160] *= 30
    return wave


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


def test_a_streamed_file_with_offline_padding_answers_as_offline_generate(lm):
    wave = loud_first(1.5)
    stream = lm.stream(PROMPT, chunk_patches=16, padded=True, max_new_tokens=8, keep_logits=True)
    answer = stream.run(realtime_chunks(wave, seconds=0.05, pace=False))
    torch.testing.assert_close(stream.logits(), lm.logits(wave, PROMPT)[0], atol=1e-5, rtol=0)
    assert answer == lm.generate(wave, PROMPT, max_new_tokens=8)
    assert stream.patches_prefilled == lm.aura["audio"]["num_frames"] // lm.aura["audio"]["patch_frames"]


def test_a_bidirectional_model_refuses_to_stream(lm):
    from aura_jax.torch.stream import TorchAuraStream

    bidirectional = type("Export", (), {"aura": dict(lm.aura, bidirectional_audio=True)})()
    with pytest.raises(StreamError, match="bidirectional"):
        TorchAuraStream(bidirectional, PROMPT)


def test_infer_stream_plays_the_file_in_real_time_and_reports_the_delay(exported, lm, tmp_path, capsys):
    import soundfile as sf

    from aura_jax.cli import main

    clip = tmp_path / "clip.wav"
    sf.write(clip, loud_first(0.6), 16000, subtype="FLOAT")
    start = time.perf_counter()
    assert main(["infer", str(exported), "--audio", str(clip), "--prompt", PROMPT, "--max-new-tokens", "3",
                 "--stream", "--padded"]) == 0
    assert time.perf_counter() - start >= 0.6  # the clip arrives at the pace it is spoken
    out, err = capsys.readouterr()
    assert out == lm.generate(str(clip), PROMPT, max_new_tokens=3) + "\n"
    assert "streamed 0.60 s of audio in real time" in err and "s after the end of speech" in err
    assert main(["infer", str(exported), "--audio", str(clip), "--stream", "--chunk-patches", "0"]) == 2
    assert "--chunk-patches 0: must be at least 1" in capsys.readouterr().err


def test_offline_features_and_streamed_padding_follow_the_training_buckets(lm, monkeypatch):
    """A run trained with data.audio_buckets: offline inference pads a clip to its bucket, as training
    did, and a padded stream pads to the same bucket (same logits)."""
    monkeypatch.setitem(lm.aura, "audio", dict(lm.aura["audio"], buckets=[500, 1000, 3000]))
    wave = loud_first(7.2)  # 720 frames → the 1000-frame bucket
    assert lm.features(wave).shape[1] == 1000 and lm.features(loud_first(2.0)).shape[1] == 500
    stream = lm.stream(PROMPT, chunk_patches=16, padded=True, max_new_tokens=4, keep_logits=True)
    stream.run(realtime_chunks(wave, seconds=0.1, pace=False))
    assert stream.patches_prefilled == 100
    torch.testing.assert_close(stream.logits(), lm.logits(wave, PROMPT)[0], atol=1e-5, rtol=0)


def test_token_by_token_answer_is_finishs_and_a_consumer_that_leaves_frees_the_cache(lm):
    frames = np.random.default_rng(4).standard_normal((lm.aura["audio"]["n_mels"], 90)).astype(np.float32)
    whole = lm.stream(PROMPT, max_new_tokens=8)
    whole.feed_features(frames)
    text = whole.finish()
    stepped = lm.stream(PROMPT, max_new_tokens=8)
    stepped.feed_features(frames)
    assert list(stepped.finish_ids()) == whole.answer_ids and stepped.answer_ids == whole.answer_ids
    assert lm.tokenizer.decode(whole.answer_ids, skip_special_tokens=True) == text
    left = lm.stream(PROMPT, max_new_tokens=8)
    left.feed_features(frames)
    gen = left.finish_ids()
    next(gen)
    assert left.cache is not None
    gen.close()
    assert left.cache is None and left.answer_ids == whole.answer_ids[:1]
