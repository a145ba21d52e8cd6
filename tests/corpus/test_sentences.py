"""The real-model demo's English: distinct templated sentences, a function of the seed, never a test
question; text-QA training questions disjoint from the spoken test questions."""

import pytest

from aura_jax.corpus import sentences
from aura_jax.evaluate.baselines import QUESTIONS


def test_sentences_are_distinct_deterministic_and_varied():
    a = sentences.sentences(0, 400)
    assert len(a) == len(set(s.lower() for s in a)) == 400
    assert a == sentences.sentences(0, 400) and a != sentences.sentences(1, 400)
    assert sum(s.endswith("?") for s in a) > 40 and sum(s.endswith(".") for s in a) > 200  # statements and questions
    assert len({w.strip(".,?'").lower() for s in a for w in s.split()}) > 250  # everyday words, not a toy grammar
    assert all(s[0].isupper() for s in a)


def test_sentences_leave_out_what_is_excluded():
    a = sentences.sentences(0, 50)
    b = sentences.sentences(0, 50, exclude=a[:10])
    assert not set(a[:10]) & set(b) and len(b) == 50


def test_asking_for_more_distinct_sentences_than_exist_is_one_error(monkeypatch):
    monkeypatch.setattr(sentences, "_FRAMES", ["{name} went home.", "Hello."])
    assert len(sentences.sentences(0, 21)) == 21  # 20 names + "Hello."
    with pytest.raises(ValueError, match="only 21 distinct sentences for 22"):
        sentences.sentences(0, 22)


def test_test_questions_extend_the_baselines_and_text_qa_never_asks_them():
    tests = sentences.TEST_QUESTIONS
    assert tests[:len(QUESTIONS)] == list(QUESTIONS) and len(tests) > len(QUESTIONS)
    assert len({q for q, _, _ in tests}) == len(tests)
    assert {k for _, _, k in tests} == {"fact", "yes/no", "count"} and all(refs for _, refs, _ in tests)
    candidates = sentences.text_qa_candidates()
    assert len(candidates) > 50
    assert not {q.lower() for q, _ in candidates} & {q.lower() for q, _, _ in tests}
