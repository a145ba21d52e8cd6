"""The real-model demo's corpus (espeak-ng, flite, festival; the gold filter by SmolLM2): training
voices never speak a test set, the held-out engine and its speakers are never heard in training,
test questions are ones the LLM answers right from the text, and a second call does no work."""

import json
import time

import pytest

from aura_jax.config import PromptConfig, SourceConfig
from aura_jax.corpus import sentences
from aura_jax.corpus.spoken import GROUPS, TRAIN_VOICES, column, group_of, make_spoken_corpus
from aura_jax.data.sources import Row, read_commonvoice, read_qa_jsonl
from aura_jax.evaluate.datasets import read_sdqa
from aura_jax.evaluate.metrics import contains

TINY = dict(num_train_sentences=10, num_test_sentences=4, max_questions=3, max_text_qa=5, max_open_qa=3, min_heard=0, min_voices=0,
            engines=("espeak-ng", "flite"))  # the neural engines' wheels: tests/corpus/test_voices.py


@pytest.fixture(scope="module")
def spoken(real_models, tmp_path_factory):
    from aura_jax.synth import espeak_available

    if not espeak_available():
        pytest.skip("espeak-ng is not installed")
    out = tmp_path_factory.mktemp("spoken") / "corpus"
    return out, make_spoken_corpus(out, str(real_models["smollm2-135m-instruct"]), log=lambda *a: None, **TINY)


def accents(directory):
    return [line.split("\t")[7] for line in (directory / "validated.tsv").read_text().splitlines()[1:]]


def test_voice_groups_never_meet_training():
    train = {column(*v) for v in TRAIN_VOICES}
    for group in ("heldout_voices", "heldout_engine"):
        assert not {column(*v) for v in GROUPS[group]} & train
    assert {column(*v) for v in GROUPS["trained"]} <= train
    assert "festival" not in {e for e, _ in TRAIN_VOICES}
    # festival's voices are flite's slt and kal speakers: neither speaks in training
    assert not {v for e, v in TRAIN_VOICES if e == "flite"} & {"slt", "kal", "kal16"}
    assert group_of("festival_slt_hts") == "heldout_engine" and group_of("flite_awb") == "trained"


def test_sets_in_the_layouts_the_readers_take(spoken):
    out, summary = spoken
    prompt = PromptConfig()
    train = list(read_commonvoice(SourceConfig(type="commonvoice", path=str(out / "asr_train")), prompt))
    assert len(train) == 10 and all(isinstance(r, Row) for r in train)
    assert set(accents(out / "asr_train")) <= {column(*v) for v in TRAIN_VOICES}
    heard = set()
    for group, voices in GROUPS.items():
        if group not in summary["groups"]:  # heldout_neural: kokoro, left out of TINY
            continue
        rows = list(read_commonvoice(SourceConfig(type="commonvoice", path=str(out / f"asr_test_{group}")), prompt))
        assert len(rows) == 4 and set(accents(out / f"asr_test_{group}")) <= {column(*v) for v in voices}
        assert not {r.text for r in rows} & {r.text for r in train}
        heard |= {r.text for r in rows}
        assert rows[0].audio.load().shape[0] > 8000
    assert not heard & {q for q, _, _ in sentences.TEST_QUESTIONS}
    assert summary["groups"] == {g: [column(*v) for v in vs] for g, vs in GROUPS.items() if g != "heldout_neural"}


def test_spoken_questions_are_the_ones_the_llm_answers_right(spoken):
    out, summary = spoken
    items = read_sdqa(out / "sdqa")
    kept = [g for g in summary["gold"] if g["kept"]]
    assert len(summary["gold"]) == 3 and kept and all(contains(g["gold"], g["answers"]) for g in kept)
    assert all(not contains(g["gold"], g["answers"]) for g in summary["gold"] if not g["kept"])
    voices = [c for cs in summary["groups"].values() for c in cs]  # TINY: no kokoro group
    assert len(items) == len(kept) * len(voices) and {it.dialect for it in items} == set(voices)
    assert {it.question for it in items} == {g["question"] for g in kept}


def test_text_qa_holds_the_llms_own_answers_and_no_test_question(spoken):
    """Reference questions are kept where the LLM is right; open ones (no reference) keep its own answer."""
    out, summary = spoken
    rows = list(read_qa_jsonl(SourceConfig(type="qa_jsonl", path=str(out / "text_qa.jsonl")), PromptConfig()))
    records = [json.loads(line) for line in (out / "text_qa.jsonl").read_text().splitlines()]
    assert len(rows) == len(records) == summary["counts"]["text_qa"] > 0
    refs = dict(sentences.text_qa_candidates())
    opened = set(sentences.open_questions()[:TINY["max_open_qa"]])
    tests = {q for q, _, _ in sentences.TEST_QUESTIONS}
    asked = set()
    for r in records:
        question, instruction = r["question"].split("\n")
        assert instruction == "Give a simple one sentence answer." and question not in tests and r["answer"]
        assert question in opened or contains(r["answer"], refs[question])
        asked.add(question)
    assert asked & opened and asked - opened  # both kinds are there


def test_a_second_call_with_the_same_parameters_does_no_work(spoken, real_models):
    out, summary = spoken
    t0 = time.perf_counter()
    again = make_spoken_corpus(out, str(real_models["smollm2-135m-instruct"]), log=lambda *a: None, **TINY)
    assert again == summary and time.perf_counter() - t0 < 1.0


def test_spoken_training_questions_are_text_qas_questions_with_the_llms_answers(spoken):
    """make_spoken_questions: each text-QA question spoken by 2 training voices, the answer its target,
    read back as spoken-question rows; cached; a test question in text_qa stops it."""
    from aura_jax.corpus.spoken import make_spoken_questions

    out, _ = spoken
    summary = make_spoken_questions(out, voices_per_question=2, log=lambda *a: None)
    records = [json.loads(line) for line in (out / "text_qa.jsonl").read_text().splitlines()]
    answer = {r["question"].split("\n")[0]: r["answer"] for r in records}
    src = SourceConfig(type="commonvoice", path=str(out / "spoken_qa_train"), answer_column="answer",
                       instruction="Give a simple one sentence answer.")
    rows = list(read_commonvoice(src, PromptConfig()))
    assert summary["clips"] == len(rows) == 2 * len(records) and all(isinstance(r, Row) for r in rows)
    for r in rows:  # r.text: the spoken question
        assert r.messages[-1] == {"role": "assistant", "content": answer[r.text]}
        assert r.messages[-2]["content"] == "<|audio|> Give a simple one sentence answer."
    voices = accents(out / "spoken_qa_train")
    assert set(voices) <= {column(*v) for v in TRAIN_VOICES}
    assert all(voices[i] != voices[i + 1] for i in range(0, len(voices), 2))  # two voices per question
    assert rows[0].audio.load().shape[0] > 8000
    t0 = time.perf_counter()
    assert make_spoken_questions(out, voices_per_question=2, log=lambda *a: None) == summary
    assert time.perf_counter() - t0 < 1.0
    bad = out.parent / "bad"
    bad.mkdir()
    test_q = sentences.TEST_QUESTIONS[0][0]
    (bad / "text_qa.jsonl").write_text(json.dumps({"question": f"{test_q}\nx", "answer": "y"}) + "\n")
    with pytest.raises(ValueError, match="holds a test question"):
        make_spoken_questions(bad, log=lambda *a: None)
