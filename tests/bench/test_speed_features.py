"""bench-train's speed-feature helpers: the padding report on the real planner, the CommonVoice-like
clip lengths, and the FLOP count of an untruncated teacher."""

import numpy as np

from aura_jax.bench.train import commonvoice_like_frames, padding_report


def test_commonvoice_like_lengths_are_short_clips():
    f = commonvoice_like_frames(5000, seed=1)
    assert f.min() >= 100 and f.max() <= 1000
    assert 4.5 < f.mean() / 100 < 5.5


def test_padding_report_counts_computed_and_present_tokens():
    frames = np.array([95, 400, 480, 501, 900, 2999, 120, 300])
    paper = padding_report(frames, [3000], batch_size=2, patch_frames=10, seed=0)
    assert paper["batches_per_bucket"] == {3000: 4} and paper["rows_dropped"] == 0
    present = int(np.ceil(frames / 10).sum())
    assert paper["audio_tokens_present"] == present and paper["audio_tokens_computed"] == 8 * 300
    b = padding_report(frames, [500, 1000, 3000], batch_size=2, patch_frames=10, seed=0)
    # buckets: 500 ← 95, 400, 480, 120, 300 (5 rows: 2 batches, 1 dropped); 1000 ← 501, 900; 3000 ← 2999 (dropped)
    assert b["batches_per_bucket"] == {500: 2, 1000: 1, 3000: 0} and b["rows_dropped"] == 2
    assert b["audio_tokens_computed"] == 2 * 2 * 50 + 2 * 100
    assert b["audio_tokens_present"] <= b["audio_tokens_computed"]
    assert b["padding_fraction"] < paper["padding_fraction"]


def test_flops_count_only_the_paired_teacher_layers_even_untruncated(tiny_aura_config):
    """XLA prunes teacher layers above the deepest paired one (their outputs are unused), so the
    untruncated teacher costs no FLOPs, only device memory for its weights (docs/BENCHMARKS.md)."""
    from aura_jax.config import load_config
    from aura_jax.tools.flops import shapes_from_config

    shapes = {"input_ids": (2, 32), "audio_features": (2, 128, 3000)}
    on = shapes_from_config(load_config(None, tiny_aura_config), shapes)
    off = shapes_from_config(load_config(None, [*tiny_aura_config, "model.truncate_teacher=false"]), shapes)
    assert on.teacher_depth == off.teacher_depth == 2
