"""Metrics against hand-worked examples (SQuAD definitions) and jiwer after Whisper normalisation."""

import pytest

from aura_jax.evaluate.metrics import asr_scores, contains, exact_match, normalize_answer, qa_scores, token_f1


def test_squad_normalisation():
    assert normalize_answer("The  Eiffel Tower!") == "eiffel tower"
    assert normalize_answer("An apple, a pear.") == "apple pear"


def test_exact_match_takes_the_best_reference():
    assert exact_match("the Paris", ["London", "paris"]) == 1.0
    assert exact_match("Paris, France", ["paris"]) == 0.0


def test_token_f1_by_hand():
    # prediction tokens {eiffel, tower, in, paris}, reference {eiffel, tower}: P = 2/4, R = 2/2, F1 = 2/3
    assert token_f1("The Eiffel Tower in Paris", ["Eiffel Tower"]) == pytest.approx(2 / 3)
    assert token_f1("blue", ["red", "blue sky"]) == pytest.approx(2 * (1 * 0.5) / 1.5)
    assert token_f1("nothing", ["something"]) == 0.0


def test_contains_whole_words_only():
    assert contains("I think it is Paris, in France.", ["paris"]) == 1.0
    assert contains("Parisian food", ["paris"]) == 0.0
    assert contains("anything", [""]) == 0.0


def test_qa_scores_bundle():
    assert qa_scores("Paris", ["Paris"]) == {"exact_match": 1.0, "f1": 1.0, "contains": 1.0}


def test_wer_uses_whisper_normalisation():
    scores = asr_scores(["Mr. Smith paid twenty-one dollars!"], ["mister smith paid $21"])
    assert scores["wer"] == 0.0 and scores["cer"] == 0.0
    one_wrong = asr_scores(["the cat sat"], ["the dog sat"])
    assert one_wrong["wer"] == pytest.approx(1 / 3)
    with pytest.raises(ValueError, match="no non-empty reference"):
        asr_scores(["x"], [""])
