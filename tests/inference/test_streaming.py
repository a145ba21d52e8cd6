"""Streaming speech input: the streamed log-mel is offline's wherever the clamp does not bind,
and chunked prefill into the KV cache gives one-shot prefill's logits and greedy answer (JAX;
the PyTorch stream: tests/torch/test_stream.py)."""

import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from aura_jax.audio import log_mel_spectrogram
from aura_jax.inference.generate import AuraStream, generate_aura
from aura_jax.inference.streaming import SpeechStream, StreamError, StreamingLogMel, padded_frames, realtime_chunks
from aura_jax.models.aura import splice_audio

N_MELS = 80


def quiet_then_loud(n, seed=0):
    """Noise whose first third is 80 dB quieter: offline clamps those frames at the clip's peak − 8,
    which the stream has not heard yet when it emits them."""
    x = np.random.default_rng(seed).standard_normal(n).astype(np.float32) * 0.1
    x[:n // 3] *= 1e-4
    return x


def streamed(x, max_frames, total, seed=1, n_mels=N_MELS):
    rng, stream, out, i = np.random.default_rng(seed), StreamingLogMel(n_mels, max_frames), [], 0
    while i < len(x):
        k = int(rng.integers(1, 4000))
        out.append(stream.feed(x[i:i + k]))
        i += k
    out.append(stream.finish(total))
    return np.concatenate(out, axis=1)


@pytest.mark.parametrize("n", [150, 32037, 480000])
def test_streamed_log_mel_is_offline_wherever_the_clamp_does_not_bind(n):
    x = quiet_then_loud(n)
    offline = log_mel_spectrogram(x, 16000, N_MELS)
    ours = streamed(x, 3000, 3000)
    floor = offline.min()  # every clamped frame sits exactly at (peak − 8 + 4) / 4
    free = offline > floor + 1e-6
    np.testing.assert_array_equal(ours[free], offline[free])
    assert (ours <= offline + 1e-6).all()  # a running maximum is never above the final one
    if n > 1000:
        assert (np.abs(ours - offline) > 1e-3).any()  # the quiet start: the approximation is real


def test_with_the_loudest_moment_first_the_stream_is_offline_exactly():
    x = quiet_then_loud(48000)[::-1].copy()  # loud first, quiet after
    np.testing.assert_array_equal(streamed(x, 600, 600), log_mel_spectrogram(x, 16000, N_MELS)[:, :600])


def test_frames_do_not_depend_on_how_the_samples_arrive():
    x = quiet_then_loud(20000)
    np.testing.assert_array_equal(streamed(x, 300, 300, seed=1), streamed(x, 300, 300, seed=2))


def test_a_frame_is_out_once_its_last_sample_is_heard():
    x = quiet_then_loud(1000)
    counts = {}
    for n in (200, 201, 359, 360, 520):
        counts[n] = StreamingLogMel(N_MELS).feed(x[:n]).shape[1]
    # frame 0 reflects samples 1..200 and reads 0..199; frame j reads samples up to 160 j + 199
    assert counts == {200: 0, 201: 1, 359: 1, 360: 2, 520: 3}


def test_finish_defaults_to_the_frames_that_hold_speech_and_refuses_more_feeding():
    stream = StreamingLogMel(N_MELS)
    stream.feed(quiet_then_loud(1601))
    assert stream.frames_out + stream.finish().shape[1] == 11  # ceil(1601 / 160)
    with pytest.raises(StreamError, match="finished"):
        stream.feed(np.zeros(10))


class Recorder(SpeechStream):
    """A backend that records what it is asked to prefill (window 100 frames, patches of 5)."""

    def __init__(self, **kw):
        super().__init__(n_mels=N_MELS, patch_frames=5, window_frames=100, **kw)
        self.calls = []

    def _prefill_chunk(self, frames, valid_patches, first_patch):
        self.calls.append((frames.shape, valid_patches, first_patch))

    def _answer(self):
        return "answer"


def test_chunks_are_prefilled_as_soon_as_complete_and_the_last_is_padded():
    stream = Recorder(chunk_patches=3, padded=False)
    assert stream.feed_features(np.zeros((N_MELS, 14), np.float32)) == 0  # 2.8 patches: nothing yet
    assert stream.feed_features(np.zeros((N_MELS, 21), np.float32)) == 2  # 7 patches: two chunks of 3
    assert stream.finish() == "answer"
    assert stream.calls == [((N_MELS, 15), 3, 0), ((N_MELS, 15), 3, 3), ((N_MELS, 15), 1, 6)]
    with pytest.raises(StreamError, match="already"):
        stream.finish()


def test_padding_is_offlines_and_speech_only_stops_at_the_last_speech_patch():
    x = quiet_then_loud(16000 * 3 // 10 + 7)[::-1].copy()  # 0.3 s: 31 frames → 7 patches of 5
    speech, window = Recorder(chunk_patches=4, padded=False), Recorder(chunk_patches=4, padded=True)
    bucketed = Recorder(chunk_patches=4, padded=True, buckets=[100, 20, 50])
    for s in (speech, window, bucketed):
        s.feed_audio(x)
        s.finish()
    assert sum(c[1] for c in speech.calls) == 7
    assert sum(c[1] for c in window.calls) == 20  # no buckets: the whole 100-frame window
    assert [c[2] for c in window.calls] == [0, 4, 8, 12, 16]
    assert sum(c[1] for c in bucketed.calls) == 10  # the smallest training bucket holding 31 frames: 50
    eager = type("Eager", (Recorder,), {"fixed_chunks": False})(chunk_patches=4, padded=True)
    eager.feed_audio(x)
    eager.finish()  # a chunk while the speech was heard; at finish, an eager backend gets the rest at once
    assert [(c[1], c[2]) for c in eager.calls] == [(4, 0), (16, 4)]


@pytest.mark.parametrize("feed,match", [
    (lambda s: s.feed_features(np.zeros((N_MELS, 105), np.float32)), "exceeds the model's window"),
    (lambda s: (s.feed_features(np.zeros((N_MELS, 7), np.float32)), s.finish()), "not a multiple of patch_frames"),
    (lambda s: s.finish(), "no audio"),
    (lambda s: (s.feed_features(np.zeros((N_MELS, 5), np.float32)), s.feed_audio(np.zeros(100))), "frames, not samples"),
])
def test_misuse_is_one_clear_error(feed, match):
    with pytest.raises(StreamError, match=match):
        feed(Recorder(chunk_patches=2, padded=False))


def test_realtime_chunks_cover_the_clip_and_pace_like_a_microphone():
    x = np.arange(1700, dtype=np.float32)
    pieces = list(realtime_chunks(x, seconds=0.01, pace=False))
    np.testing.assert_array_equal(np.concatenate(pieces), x)
    assert [len(p) for p in pieces] == [160] * 10 + [100]
    start = time.perf_counter()
    list(realtime_chunks(np.zeros(1600), seconds=0.02))
    assert time.perf_counter() - start >= 0.099  # 0.1 s of audio takes 0.1 s to arrive


# ---------------------------------------------------------------------------
# JAX: chunked prefill equals one-shot prefill
# ---------------------------------------------------------------------------
WINDOW = ["audio.num_frames=250", "audio.patch_frames=5", "data.audio_buckets=[250]"]


def bumped_student(make_aura, *overrides):
    """A tiny student with a 50-patch window and non-zero LoRA B (so the adapters act)."""
    model = make_aura(*WINDOW, *overrides)
    rng = np.random.default_rng(0)
    bump = lambda path, x: (jnp.asarray(rng.standard_normal(x.shape) * 0.05, x.dtype)
                            if any(getattr(p, "key", None) == "lora_b" for p in path) else x)
    nnx.update(model, jax.tree_util.tree_map_with_path(bump, nnx.state(model)))
    return model


@pytest.fixture(scope="module")
def student(make_aura):
    return bumped_student(make_aura)


def one_shot_logits(model, ids, frames):
    ids = jnp.asarray([ids])
    mask = jnp.ones(ids.shape, bool)
    spliced = splice_audio(model.llm.embed(ids), ids, mask, jnp.zeros(ids.shape, bool),
                           model.audio_embed(jnp.asarray(frames)[None]), model.placeholder_id)
    return np.asarray(model.llm(inputs_embeds=spliced.embeds, attention_mask=spliced.attention_mask,
                                adapter_mask=spliced.audio_mask,
                                bidirectional_mask=model.audio_attention_groups(spliced)).logits[0])


def prompt(model):
    return [5, 6, 7, model.placeholder_id, 8, 9, 10, 11, 12]


@pytest.mark.parametrize("chunk", [1, 7, 50])
def test_chunked_prefill_gives_one_shot_logits_and_answer(student, chunk):
    check_chunked_prefill(student, chunk)


def test_audio_only_adapters_stream_exactly_too(make_aura):
    """lora.audio_only: a chunk's audio tokens get the adapters, the text around them none, as one-shot."""
    model = bumped_student(make_aura, "lora.audio_only=true")
    check_chunked_prefill(model, 7)
    paper = one_shot_logits(bumped_student(make_aura), prompt(model), np.ones((128, 135), np.float32))
    assert not np.allclose(one_shot_logits(model, prompt(model), np.ones((128, 135), np.float32)), paper)


def check_chunked_prefill(student, chunk):
    frames = np.random.default_rng(3).standard_normal((128, 135)).astype(np.float32)  # 27 patches
    ids = prompt(student)
    stream = AuraStream(student, ids, chunk_patches=chunk, max_new_tokens=6, keep_logits=True)
    rng, i = np.random.default_rng(chunk), 0
    while i < frames.shape[1]:  # frames arrive in pieces unrelated to patches or chunks
        k = int(rng.integers(1, 40))
        stream.feed_features(frames[:, i:i + k])
        i += k
    answer = stream.finish()
    np.testing.assert_allclose(np.asarray(stream.logits()), one_shot_logits(student, ids, frames), atol=1e-5, rtol=0)
    offline = np.asarray(generate_aura(student, np.array([ids]), np.ones((1, len(ids)), bool), frames[None],
                                       max_new_tokens=6))[0]
    assert stream.tokens == offline.tolist() and answer == offline.tolist()
    assert stream.chunks_prefilled == -(-27 // chunk)


def test_padding_to_padded_frames_follows_the_training_buckets():
    assert [padded_frames(f, [300, 100, 3000]) for f in (1, 100, 101, 2999, 3000, 3500)] == [
        100, 100, 300, 3000, 3000, 3000]


def test_streamed_audio_with_offline_padding_answers_as_offline_inference(student):
    x = quiet_then_loud(16000)[::-1].copy()  # loudest first: the running-max clamp is offline's
    offline_features = log_mel_spectrogram(x, 16000, 128)[:, :250]
    ids = prompt(student)
    stream = AuraStream(student, ids, chunk_patches=7, padded=True, max_new_tokens=5, keep_logits=True)
    stream.run(realtime_chunks(x, seconds=0.03, pace=False))
    np.testing.assert_allclose(np.asarray(stream.logits()), one_shot_logits(student, ids, offline_features),
                               atol=1e-5, rtol=0)
    assert stream.patches_prefilled == 50 and stream.first_token_time >= stream.end_of_speech


@pytest.mark.parametrize("chunk", [3, 6])
def test_chunk_bidirectional_audio_streams_exactly_in_multiples_of_its_chunk(make_aura, chunk):
    """distill.bidirectional_chunk=3: streamed 3 or 6 patches at a time, the logits are one-shot's (whose
    audio tokens attend both ways within chunks of 3); 4 at a time is refused."""
    model = bumped_student(make_aura, "distill.bidirectional_audio=true", "distill.bidirectional_chunk=3")
    check_chunked_prefill(model, chunk)
    with pytest.raises(StreamError, match="stream a multiple of 3 patches"):
        AuraStream(model, prompt(model), chunk_patches=4)


def test_a_bidirectional_model_refuses_to_stream(make_aura):
    model = make_aura(*WINDOW, "distill.bidirectional_audio=true")
    with pytest.raises(StreamError, match="bidirectional_audio=true"):
        AuraStream(model, prompt(model))


def test_token_by_token_decoding_gives_the_fused_loops_answer_and_frees_the_cache_when_left(student):
    frames = np.random.default_rng(5).standard_normal((128, 95)).astype(np.float32)
    ids = prompt(student)
    fused = AuraStream(student, ids, chunk_patches=4, max_new_tokens=7)
    fused.feed_features(frames)
    stepped = AuraStream(student, ids, chunk_patches=4, max_new_tokens=7)
    stepped.feed_features(frames)
    tokens = stepped.finish_ids()
    first = next(tokens)
    assert stepped.first_token_time >= stepped.end_of_speech  # the first id is out before the rest is decoded
    assert [first, *tokens] == fused.finish() and len(fused.tokens) == 7
    left = AuraStream(student, ids, chunk_patches=4, max_new_tokens=7)
    left.feed_features(frames)
    gen = left.finish_ids()
    next(gen)
    gen.close()  # the client went away after one token
    assert left._cache is None
