"""make_corpus: CommonVoice / SD-QA layouts read by the project's own readers, held-out voices
kept out of training, deterministic, cached."""

import json

import pytest
from tests.corpus.conftest import TINY

from aura_jax.config import PromptConfig, SourceConfig
from aura_jax.corpus import grammar
from aura_jax.corpus.make import HELDOUT_VOICES, make_corpus, voice_column
from aura_jax.data.sources import Row, read_commonvoice, read_qa_jsonl
from aura_jax.evaluate.datasets import read_sdqa


def _rows(path):
    return list(read_commonvoice(SourceConfig(type="commonvoice", path=str(path)), PromptConfig()))


def test_layout_and_readers(tiny_corpus):
    out, summary = tiny_corpus
    train, test = _rows(out / "asr_train"), _rows(out / "asr_test")
    assert len(train) == 24 and len(test) == 6 and all(isinstance(r, Row) for r in train + test)
    assert not {r.text for r in train} & {r.text for r in test}
    assert train[0].audio.load().ndim == 1 and train[0].audio.load().shape[0] > 8000
    header = (out / "asr_train" / "validated.tsv").read_text().splitlines()[0].split("\t")
    assert header[:3] == ["client_id", "path", "sentence"] and "accent" in header
    # held-out voices never speak in asr_train; asr_test is spoken by held-out voices only
    accents = lambda d: {l.split("\t")[7] for l in (out / d / "validated.tsv").read_text().splitlines()[1:]}
    assert not accents("asr_train") & set(HELDOUT_VOICES)
    assert accents("asr_test") <= set(HELDOUT_VOICES)

    dialects = summary["sdqa_dialects"]
    assert dialects == [voice_column(v) for v in HELDOUT_VOICES] == ["en_gb_scotland", "en_gb_x_gbclan", "en_gb_x_gbcwmd"]
    items = read_sdqa(out / "sdqa" / "dev.parquet", split="dev", dialects=dialects)
    assert len(items) == 6 * len(dialects)
    for it in items:
        assert grammar.answer_from_facts(it.question) == it.references[0]
    assert items[0].audio.load().shape[0] > 8000
    sdqa_questions = {it.question for it in items}
    assert not sdqa_questions & {r.text for r in train}  # the spoken test questions are not ASR training

    qa = list(read_qa_jsonl(SourceConfig(type="qa_jsonl", path=str(out / "text_qa.jsonl")), PromptConfig()))
    assert len(qa) == summary["counts"]["text_qa"] and all(isinstance(r, Row) for r in qa)
    for line in (out / "text_qa.jsonl").read_text().splitlines():
        r = json.loads(line)
        assert grammar.answer_from_facts(r["question"]) == r["answer"] and r["question"] not in sdqa_questions
    lm = (out / "lm_text.txt").read_text().splitlines()
    assert "anna lives in paris" in lm and any(l.startswith("question ") for l in lm)


def test_cache_hit_and_determinism(tiny_corpus, tmp_path):
    out, summary = tiny_corpus
    wav = out / "asr_train" / "clips" / "train_000000.wav"
    mtime = wav.stat().st_mtime_ns
    assert make_corpus(out, **TINY) == summary and wav.stat().st_mtime_ns == mtime  # cache hit: nothing rewritten
    other = make_corpus(tmp_path / "again", **{**TINY, "num_train_sentences": 4, "num_test_sentences": 2})
    assert other["counts"]["asr_train"] == 4
    a = (out / "asr_train" / "validated.tsv").read_text().splitlines()[1:5]
    assert (tmp_path / "again" / "asr_train" / "validated.tsv").read_text().splitlines()[1:5] == a
    assert (tmp_path / "again" / "asr_train" / "clips" / "train_000001.wav").read_bytes() == \
        (out / "asr_train" / "clips" / "train_000001.wav").read_bytes()


def test_overlapping_voices_and_missing_espeak(tmp_path, monkeypatch):
    with pytest.raises(ValueError, match="overlap"):
        make_corpus(tmp_path / "x", voices=["en-us"], heldout_voices=["en-us"])
    monkeypatch.setattr("shutil.which", lambda name: None)
    with pytest.raises(RuntimeError, match="apt-get install espeak-ng"):
        make_corpus(tmp_path / "y", num_train_sentences=2, num_test_sentences=1, num_qa=1)
    assert not (tmp_path / "y").exists()
