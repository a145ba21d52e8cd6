"""`aura-jax baselines` on the real models: gold, the cascade, WER and timings per voice and engine."""

from __future__ import annotations

import json


def test_two_voices_of_two_engines_on_a_question_the_llm_knows(real_models, tmp_path):
    from aura_jax.evaluate.baselines import QUESTIONS, run_baselines

    questions = [q for q in QUESTIONS if q[0] == "What is the capital of France?"] + \
        [("What is the capital of Atlantis?", ["Poseidonia"], "fact")]  # no right answer: the gold filter drops it
    result = run_baselines(real_models["smollm2-135m-instruct"], real_models["whisper-tiny.en"], tmp_path,
                           voices=[("espeak-ng", "en-us"), ("flite", "slt")], questions=questions, log=lambda *a: None)
    s = result["summary"]
    assert (s["questions"], s["gold_right"]) == (2, 1) and "Paris" in result["gold"][0]["gold"]
    assert set(s["by_voice"]) == {"espeak-ng/en-us", "flite/slt"} and set(s["by_engine"]) == {"espeak-ng", "flite"}
    heard = s["by_voice"]["espeak-ng/en-us"]  # this clip is transcribed word for word (tests/convert)
    assert heard["n"] == 1 and heard["wer"] == 0.0 and heard["cascade_acc"] == 100.0
    assert all(r["asr_s"] > 0 and r["llm_s"] > 0 for r in result["cascade"])
    assert json.loads((tmp_path / "baselines.json").read_text())["summary"] == json.loads(json.dumps(s))
    assert "| espeak-ng/en-us | 1 | 0.0 | 100.0 | 100 |" in (tmp_path / "baselines.md").read_text()
