"""Spoken-QA diagnosis: each wrong answer is put down to hearing (misheard), the task (transcribes)
or not listening (prior), in that order after 'correct'."""

import pytest

from aura_jax.evaluate.diagnose import CATEGORIES, categorize, summarize

Q = "where does anna live"


def test_each_category_on_its_defining_case():
    kw = dict(question=Q, references=["paris"], heard="where does tom live", answer_to_heard="london",
              silence_answer="eight")
    assert categorize("paris", **kw) == "correct"
    assert categorize("she lives in paris", **kw) == "correct"  # the "contains" metric
    assert categorize("where does anna live", **kw) == "transcribes"
    assert categorize("where does anna lives", **kw) == "transcribes"  # within 50 % WER of the question
    assert categorize("where does tom live", **kw) == "transcribes"  # what it heard, written down
    assert categorize("london", **kw) == "misheard"  # the right answer to what it heard
    assert categorize("eight", **kw) == "prior"  # what it says over silence
    assert categorize("tokyo", **kw) == "wrong"
    assert categorize("", **kw) == "wrong"


def test_a_correct_answer_is_never_counted_as_a_transcription_and_order_decides_ties():
    # the question contains the reference: answering with the question counts as correct first
    assert categorize("is paris big", "is paris big", ["paris"], "", "", "") == "correct"
    # heard right, answered like silence: the LLM's answer to the heard text wins (it is checked first)
    assert categorize("eight", Q, ["paris"], Q, "eight", "eight") == "misheard"


def test_summary_counts_every_category_overall_and_per_voice():
    records = [{"dialect": d, "category": c, "question": Q, "prediction": "x", "heard": "", "references": []}
               for d, c in (("a", "correct"), ("a", "wrong"), ("b", "wrong"), ("b", "prior"))]
    s = summarize(records)
    assert s["n"] == 4 and set(s["all"]) == set(CATEGORIES)
    assert s["all"]["wrong"] == {"n": 2, "pct": 50.0} and s["all"]["transcribes"]["n"] == 0
    assert s["by_dialect"]["a"]["correct"]["pct"] == 50.0 and s["by_dialect"]["b"]["prior"]["pct"] == 50.0


def test_hearing_separates_transcribing_the_question_from_answering_it():
    from aura_jax.evaluate.diagnose import hearing

    def rec(question, heard, category, llm):
        return {"question": question, "heard": heard, "category": category, "llm_answer_to_heard": llm,
                "references": ["paris"]}

    records = [rec(Q, Q, "wrong", "paris"),  # heard exactly, answered wrong; the LLM reading it is right
               rec(Q, Q, "correct", "paris"),
               rec(Q, "where does tom live", "misheard", "london")]
    h = hearing(records)
    assert h["heard_exactly"] == 2 and h["heard_exactly_answered_correctly"] == 1
    assert h["llm_answers_its_exact_transcripts_correctly"] == 2 and h["llm_answers_its_transcripts_correctly"] == 2
    assert h["question_wer"] == pytest.approx(100 / 12)  # one substitution in 12 reference words
