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


# Closed vocabulary, open sentences (issue 33): the demo's corpus at its default size.
def spoken_voices():
    from aura_jax.corpus.spoken import TRAIN_VOICES

    return TRAIN_VOICES


@pytest.fixture(scope="module")
def demo_selection():
    from aura_jax.corpus.spoken import TRAIN_VOICES
    from aura_jax.demo_real import REAL_SIZES

    size = REAL_SIZES["full"].corpus
    asked = [q for q, _, _ in sentences.TEST_QUESTIONS]
    test = sentences.sentences(0, size["num_test_sentences"] * 3, exclude=asked)
    train = sentences.select_covering(sentences.candidates(0, 200, exclude=asked + test), sentences.test_words(test),
                                      size["num_train_sentences"], len(TRAIN_VOICES), min_heard=20, min_voices=4,
                                      engine_of=[e for e, _ in TRAIN_VOICES], min_engines=2)
    return test, train


def test_every_test_word_is_heard_20_times_by_4_training_voices(demo_selection):
    test, train = demo_selection
    targets = sentences.test_words(test)
    assert {"capital", "france", "planet", "juliet", "symbol", "largest", "celsius"} <= targets
    heard = sentences.coverage(train, targets)
    short = {w: c for w, c in heard.items() if c[0] < 20 or c[1] < 4}
    assert not short and len(heard) == len(targets) > 300


def test_no_test_sentence_or_question_is_heard_in_training(demo_selection):
    test, train = demo_selection
    said = {s.lower() for s, _ in train}
    assert not said & {s.lower() for s in test}
    assert not said & {q.lower() for q, _, _ in sentences.TEST_QUESTIONS}
    assert len(said) == len(train) == 2400 and {v for _, v in train} <= set(range(len(spoken_voices())))


def test_coverage_counts_sentences_and_voices_independently():
    train = [("Paris is big.", 0), ("Paris is old.", 0), ("Anna's cat is big.", 1)]
    assert sentences.coverage(train, {"paris", "big", "anna", "rome"}) == {
        "anna": (1, 1), "big": (2, 2), "paris": (2, 1), "rome": (0, 0)}


def test_a_word_no_frame_says_stops_the_selection_naming_it():
    pool = ["Anna went home.", "Tom went home.", "Anna saw Tom."]
    with pytest.raises(ValueError, match="'zeppelin'"):
        sentences.select_covering(pool, {"anna", "zeppelin"}, 3, 2, min_heard=1, min_voices=1)
    picked = sentences.select_covering(pool, {"anna"}, 3, 2, min_heard=2, min_voices=2)
    assert len(picked) == 3 and sentences.coverage(picked, {"anna"})["anna"] == (2, 2)
    with pytest.raises(ValueError, match="takes 2 training sentences, more than the 1 asked"):
        sentences.select_covering(pool, {"anna"}, 1, 2, min_heard=2, min_voices=1)


def test_an_unheard_test_word_stops_the_corpus_build_before_any_audio(monkeypatch, tmp_path):
    from aura_jax.corpus import spoken

    monkeypatch.setattr(spoken, "espeak_available", lambda: True, raising=False)
    monkeypatch.setattr("aura_jax.synth.espeak_available", lambda: True)
    monkeypatch.setattr(sentences, "TEST_QUESTIONS", [("What is a zeppelin?", ["airship"], "fact")])
    with pytest.raises(ValueError, match="'zeppelin'"):
        spoken.make_spoken_corpus(tmp_path / "corpus", "/no/llm/needed", num_train_sentences=50, num_test_sentences=2,
                                  log=lambda *a: None)
    assert not (tmp_path / "corpus").exists()


def test_text_qa_has_breadth_beyond_the_reference_questions():
    opened = sentences.open_questions()
    assert len(opened) + len(sentences.text_qa_candidates()) > 250
    assert len(set(opened)) == len(opened)
    assert not {q.lower() for q in opened} & {q.lower() for q, _, _ in sentences.TEST_QUESTIONS}
