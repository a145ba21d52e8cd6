"""`aura-jax bench-engines` (aura_jax/corpus/speed.py): each engine's speed, from clips it really speaks."""

import pytest

from aura_jax.corpus import voices
from aura_jax.corpus.speed import SPEAKERS, engine_speed, format_speed


def test_every_engine_is_timed_as_one_of_its_training_speakers():
    ids = {s.id for s in voices.inventory()}
    assert set(SPEAKERS) == set(voices.ENGINES) and all(s.id in ids for s in SPEAKERS.values())


def test_the_table_gives_real_time_factors_of_the_clips_spoken():
    r = engine_speed(["espeak-ng", "flite"], sentences=2)
    assert [x["engine"] for x in r["engines"]] == ["espeak-ng", "flite"]
    for x in r["engines"]:
        assert x["clips"] == 2 and x["audio_s"] > 1.0 and x["wall_s"] > 0
        assert x["x_real_time"] == pytest.approx(x["audio_s"] / x["wall_s"], rel=0.01)
    text = format_speed(r)
    assert "| espeak-ng | espeak-ng:en-us:pitch=lo | 2 |" in text and f"CPU: {r['cpu']}" in text


def test_an_unknown_engine_is_one_error_naming_it():
    with pytest.raises(ValueError, match="'festival'"):
        engine_speed(["festival"])
