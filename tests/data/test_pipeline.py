"""TrainData: batch format, buckets, determinism, per-process shards, resuming, and aura_loss."""

import io

import numpy as np
import pytest
import soundfile as sf

from aura_jax.audio import log_mel_segments, log_mel_spectrogram
from aura_jax.config import ConfigError
from aura_jax.data import TrainData
from aura_jax.synth import synthetic_signal
from tests.data.datafiles import cfg, write_commonvoice

MIXED = ("data.speech=[{type: synthetic, num_rows: 8}]", "data.text=[{type: synthetic, num_rows: 6}]",
         "batch_size=4", "data.text_bucket=16", "epochs=2")


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("data_cache")


@pytest.fixture(scope="module")
def make(tokenizer, cache):
    def make(*overrides, **kw):
        return TrainData(cfg(f"data.cache_dir={cache}", *MIXED, *overrides), tokenizer, verbose=False, **kw)
    return make


@pytest.fixture(scope="module")
def mixed(make):
    return make()


def wav(seconds: float, seed: int = 0) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, synthetic_signal(seconds, seed=seed), 16000, format="WAV")
    return buf.getvalue()


def assert_same(a: dict, b: dict):
    assert a.keys() == b.keys()
    for k in a:
        assert a[k].dtype == b[k].dtype, k
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)


def test_batch_format(mixed, tokenizer):
    assert mixed.stats["speech_rows"] == 8 and mixed.stats["text_rows"] == 6
    assert mixed.num_steps == 6 and mixed.stats["dropped_per_epoch"] == 2
    silence = log_mel_spectrogram(np.zeros(16000, np.float32), 16000)
    seen = 0
    for step, batch in enumerate(mixed.iterator()):
        b, t = batch["input_ids"].shape
        assert b == 4 and t % 16 == 0
        assert batch["input_ids"].dtype == np.int32 and batch["example_index"].dtype == np.int64
        assert batch["attention_mask"].dtype == batch["loss_mask"].dtype == bool
        assert batch["audio_features"].dtype == np.float32 and batch["audio_features"].shape == (4, 128, 3000)
        assert batch["audio_valid_frames"].dtype == np.int32
        assert "teacher_features" not in batch  # the student sees the whole 30 s window
        lengths = batch["attention_mask"].sum(1)
        assert t - 16 < lengths.max() <= t
        for i, r in enumerate(batch["example_index"]):
            ex, n = mixed.examples[r], lengths[i]
            assert batch["attention_mask"][i, :n].all() and (batch["input_ids"][i, n:] == tokenizer.pad_token_id).all()
            np.testing.assert_array_equal(batch["input_ids"][i, :n], ex.ids)
            ids, mask = batch["input_ids"][i], batch["loss_mask"][i]
            assert not mask[n:].any()
            # Targets: exactly the answer and its end-of-turn token; one placeholder per speech row only.
            assert tokenizer.decode(ids[mask], skip_special_tokens=False) == ex.text + "<|im_end|>"
            speech = ex.kind == "speech"
            assert (ids == tokenizer.audio_token_id).sum() == int(speech)
            if speech:
                feats, valid = log_mel_segments(ex.audio.load(), 16000, max_segments=1)
                np.testing.assert_array_equal(batch["audio_features"][i], feats[0])
                assert batch["audio_valid_frames"][i] == valid[0] == ex.frames > 100
            else:
                np.testing.assert_array_equal(batch["audio_features"][i], silence)
                assert batch["audio_valid_frames"][i] == 0
            seen += 1
    assert step == 5 and seen == 24


def test_buckets_and_teacher_features(tokenizer, tmp_path):
    lengths = {"three.wav": 3.0, "five.wav": 5.0, "seven.wav": 7.0, "twelve.wav": 12.0, "long.wav": 35.0}
    cv = write_commonvoice(tmp_path / "cv", [(n, f"clip {n}", wav(s, i)) for i, (n, s) in enumerate(lengths.items())])
    common = (f"data.cache_dir={tmp_path / 'cache'}", f"data.speech=[{{type: commonvoice, path: '{cv}'}}]",
              "data.text=[{type: synthetic, num_rows: 1}]", "batch_size=1", "data.shuffle=false", "epochs=1",
              "data.audio_buckets=[500,1000,3000]")
    data = TrainData(cfg(*common), tokenizer, verbose=False)
    # The 35 s clip is longer than the student's 30 s window: its transcript speaks of audio the
    # model would never hear, so it is skipped and counted, not trained on cut off.
    assert data.stats["skipped"] == {"audio_too_long": 1}
    expect = {"three.wav": 500, "five.wav": 500, "seven.wav": 1000, "twelve.wav": 3000}
    by_id = {}
    for batch in data.iterator():
        ex = data.examples[batch["example_index"][0]]
        by_id[ex.id] = batch
        L = batch["audio_features"].shape[-1]
        assert L == expect.get(ex.id, 500)  # the text row goes to the smallest bucket
        assert ("teacher_features" in batch) == (L < 3000)
    assert set(by_id) == set(expect) | {"synthetic-qa-0-0"}
    five = by_id["five.wav"]  # exactly 5 s = 500 valid frames
    assert five["audio_valid_frames"][0] == 500
    assert five["teacher_features"].shape == (1, 1, 128, 3000) and five["teacher_valid_frames"].tolist() == [[500]]
    np.testing.assert_array_equal(five["audio_features"][0], five["teacher_features"][0, 0, :, :500])
    assert by_id["three.wav"]["audio_valid_frames"][0] == 300
    text = by_id["synthetic-qa-0-0"]
    assert text["audio_valid_frames"][0] == 0 and not text["teacher_features"].any()

    # Buckets whose largest is shorter than a clip: the student would hear it cut, so it is skipped too.
    small = TrainData(cfg(*common, "data.audio_buckets=[500,1000]"), tokenizer, verbose=False)
    assert small.stats["skipped"] == {"audio_too_long": 2}
    assert {ex.id for ex in small.examples} == {"three.wav", "five.wav", "seven.wav", "synthetic-qa-0-0"}

    # A shorter teacher window (audio.teacher_frames): the teacher sees the first 800 frames, valid capped.
    short = TrainData(cfg(*common, "audio.teacher_frames=800"), tokenizer, verbose=False)
    for batch in short.iterator():
        ex = short.examples[batch["example_index"][0]]
        assert batch["teacher_features"].shape == (1, 1, 128, 800)
        if ex.id == "five.wav":
            assert batch["teacher_valid_frames"].tolist() == [[500]]
            np.testing.assert_array_equal(batch["teacher_features"][0, 0, :, :500], five["audio_features"][0])
        elif ex.id == "twelve.wav":
            assert batch["teacher_valid_frames"].tolist() == [[800]]
            np.testing.assert_array_equal(batch["teacher_features"][0, 0], batch["audio_features"][0][:, :800])
    # The teacher on the clip's bucket (audio.teacher_frames=bucket): no features of its own in any batch,
    # so the loss hands it the student's audio_features and valid frames (training/loss.py).
    fitted = TrainData(cfg(*common, "audio.teacher_frames=bucket"), tokenizer, verbose=False)
    shapes = {fitted.examples[b["example_index"][0]].id: b["audio_features"].shape[-1] for b in fitted.iterator()
              if "teacher_features" not in b}
    assert shapes == {**expect, "synthetic-qa-0-0": 500}
    with pytest.raises(ConfigError, match="even buckets"):
        cfg(*common, "audio.teacher_frames=bucket", "data.audio_buckets=[505,3000]", "audio.patch_frames=5")
    with pytest.raises(ConfigError, match="teacher_segments=1"):
        cfg(*common, "audio.teacher_frames=bucket", "audio.teacher_segments=2")
    with pytest.raises(ConfigError, match="'clip'"):
        cfg(*common, "audio.teacher_frames=clip")
    with pytest.raises(ConfigError, match="teacher_frames"):
        cfg(*common, "audio.teacher_frames=801")
    with pytest.raises(ConfigError, match="teacher_segments=1"):
        cfg(*common, "audio.teacher_frames=800", "audio.teacher_segments=2")

    # Two teacher segments: the 35 s clip's teacher sees all of it, even in the 3000 bucket.
    # The student hears its first 30 s window (long clips are what teacher_segments > 1 is for).
    data2 = TrainData(cfg(*common, "audio.teacher_segments=2"), tokenizer, verbose=False)
    assert data2.stats["skipped"] == {}
    for batch in data2.iterator():
        ex = data2.examples[batch["example_index"][0]]
        assert batch["teacher_features"].shape == (1, 2, 128, 3000)
        if ex.id == "long.wav":
            assert batch["teacher_valid_frames"].tolist() == [[3000, 500]]
            assert batch["audio_valid_frames"].tolist() == [3000]
        elif ex.id == "seven.wav":
            assert batch["teacher_valid_frames"].tolist() == [[700, 0]] and not batch["teacher_features"][0, 1].any()


def test_deterministic_and_seeded(make, mixed):
    again = make()
    for step in range(mixed.num_steps):
        assert_same(mixed.batch(step), again.batch(step))
    for step, batch in enumerate(again.iterator()):
        assert_same(batch, mixed.batch(step))
    order = lambda d: np.concatenate([d.plan[s][1] for s in range(d.num_steps)])
    other = make("seed=1")
    np.testing.assert_array_equal(other.batch(0)["example_index"], other.plan[0][1])
    assert not np.array_equal(order(other), order(mixed))
    assert order(make("data.shuffle=false"))[:12].tolist() == list(range(12))


def test_process_shards_concatenate_to_the_global_batch(make, mixed):
    shards = [make(process_index=p, process_count=2) for p in range(2)]
    for step in range(mixed.num_steps):
        full = mixed.batch(step)
        parts = [s.batch(step) for s in shards]
        assert parts[0]["input_ids"].shape == parts[1]["input_ids"].shape  # same T on every process
        for k in full:
            np.testing.assert_array_equal(np.concatenate([p[k] for p in parts]), full[k], err_msg=k)
    with pytest.raises(ConfigError, match="not divisible"):
        make(process_index=0, process_count=3)


def test_resume_from_grain_checkpoint(make, mixed, tmp_path):
    import grain
    import orbax.checkpoint as ocp

    it = mixed.iterator()
    for _ in range(3):
        next(it)
    manager = ocp.CheckpointManager(tmp_path / "ckpt")
    manager.save(3, args=ocp.args.Composite(iter=grain.checkpoint.CheckpointSave(it)))
    manager.wait_until_finished()
    fresh = make().iterator()
    ocp.CheckpointManager(tmp_path / "ckpt").restore(
        3, args=ocp.args.Composite(iter=grain.checkpoint.CheckpointRestore(fresh)))
    assert_same(next(fresh), mixed.batch(3))
    # Plain get_state / set_state too.
    state = it.get_state()
    other = make().iterator()
    other.set_state(state)
    assert_same(next(other), next(it))


def test_bad_buckets_are_config_errors(make):
    with pytest.raises(ConfigError, match="audio_buckets"):
        make("data.audio_buckets=[505]")  # not a multiple of patch_frames


def test_pipeline_batch_runs_through_aura_loss(make, make_aura, tokenizer):
    import jax
    from flax import nnx

    from aura_jax.training.loss import aura_loss

    data = make("data.audio_buckets=[500,3000]")
    batch = data.batch(0)
    assert batch["audio_features"].shape[-1] == 500 and "teacher_features" in batch
    model = make_aura()
    assert model.placeholder_id == tokenizer.audio_token_id
    graphdef, state = nnx.split(model)
    # jit: one compile is several times faster than eager op-by-op dispatch here.
    loss, metrics = jax.jit(lambda s, b: aura_loss(nnx.merge(graphdef, s), b))(state, batch)
    assert np.isfinite(float(loss)) and float(metrics["distill"]) > 0 and float(metrics["ce"]) > 0
    assert int(metrics["target_tokens"]) == int(batch["loss_mask"].sum())
