"""The bundled grammar and fact table: deterministic, small, every answer derivable from the facts."""

from aura_jax.corpus import grammar


def test_sentences_are_deterministic_distinct_and_lowercase():
    a, b = grammar.sentences(3, 50), grammar.sentences(3, 50)
    assert a == b and len(set(a)) == 50
    assert grammar.sentences(4, 50) != a
    vocab = grammar.vocabulary()
    for s in a:
        assert s == s.lower() and not any(c.isdigit() for c in s)
        assert set(s.split()) <= vocab, s
    assert 100 <= len(vocab) <= 500


def test_every_answer_follows_from_the_fact_table():
    qs = grammar.all_questions()
    assert len({q for _, q, _ in qs}) == len(qs)
    for _, q, a in qs:
        assert grammar.answer_from_facts(q) == a
        assert len(a.split()) <= 3
    assert grammar.answer_from_facts("what is three plus four") == "seven"
    assert grammar.answer_from_facts("where does anna live") == "paris"
    assert grammar.answer_from_facts("in which country does anna live") == "france"


def test_question_split_is_deterministic_and_disjoint():
    train, test = grammar.split_questions(0, 20)
    assert (train, test) == grammar.split_questions(0, 20)
    assert len(test) == 20 and len(train) + 20 == len(grammar.all_questions())
    assert not {q for q, _ in train} & {q for q, _ in test}
    assert grammar.split_questions(1, 20)[1] != test


def test_sentences_can_exclude_questions():
    _, test = grammar.split_questions(0, 100)
    excluded = {q for q, _ in test}
    assert not set(grammar.sentences(0, 300, exclude=excluded)) & excluded


def test_number_words():
    assert [grammar.number_words(n) for n in (0, 13, 40, 99)] == ["zero", "thirteen", "forty", "ninety nine"]
