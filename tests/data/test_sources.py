"""Each source reads its fixture written in the real layout."""

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from aura_jax.audio import load_audio_bytes
from aura_jax.config import PromptConfig, SourceConfig
from aura_jax.data.sources import BadRow, Row, read_source
from tests.data.datafiles import SENTENCES

PROMPT = PromptConfig()
HF_FEATURES = {"info": {"features": {"audio": {"sampling_rate": 16000, "_type": "Audio"},
                                     "sentence": {"dtype": "string", "_type": "Value"}}}}


def rows_of(src: SourceConfig, kind: str = "speech"):
    return list(read_source(src, PROMPT, kind))


def audio_table(cells, texts) -> pa.Table:
    """The schema `datasets` writes for an Audio column: struct<bytes: binary, path: string>."""
    audio = pa.array(cells, type=pa.struct([("bytes", pa.binary()), ("path", pa.string())]))
    table = pa.table({"audio": audio, "sentence": pa.array(texts, pa.string())})
    return table.replace_schema_metadata({"huggingface": json.dumps(HF_FEATURES)})


def test_commonvoice(cv_dir):
    rows = rows_of(SourceConfig(type="commonvoice", path=str(cv_dir)))
    assert [r.text for r in rows] == SENTENCES  # quotes survive: quoting is off
    r = rows[0]
    assert r.kind == "speech" and r.id == "common_voice_en_0.mp3" and "validated.tsv line 2" in r.where
    assert r.messages == [{"role": "system", "content": PROMPT.system},
                          {"role": "user", "content": "<|audio|> Transcribe the speech."},
                          {"role": "assistant", "content": SENTENCES[0]}]
    wave = r.audio.load()
    assert wave.dtype == np.float32 and 16000 < wave.size < 16000 * 10 and np.abs(wave).max() > 0.05


def test_commonvoice_spoken_questions_answer_from_their_column(cv_dir, tmp_path):
    """answer_column: the clip is the question, the prompt is the instruction, the target that column."""
    lines = (cv_dir / "validated.tsv").read_text().splitlines()
    (cv_dir / "qa.tsv").write_text("\n".join([lines[0] + "\tanswer"] + [f"{l}\tAnswer {i}." for i, l in
                                                                          enumerate(lines[1:])]) + "\n")
    src = SourceConfig(type="commonvoice", path=str(cv_dir), tsv="qa.tsv", answer_column="answer",
                       instruction="Give a simple one sentence answer.")
    rows = rows_of(src)
    assert len(rows) == len(SENTENCES) and [r.text for r in rows] == SENTENCES
    assert rows[1].messages == [{"role": "system", "content": PROMPT.system},
                                {"role": "user", "content": "<|audio|> Give a simple one sentence answer."},
                                {"role": "assistant", "content": "Answer 1."}]
    with pytest.raises(ValueError, match="answer_column='reply' is not a column"):
        rows_of(SourceConfig(type="commonvoice", path=str(cv_dir), tsv="qa.tsv", answer_column="reply",
                             instruction="x"))


def test_a_spoken_question_source_needs_its_instruction_and_no_ctc():
    from aura_jax.config import ConfigError
    from tests.data.datafiles import cfg

    qa = "data.speech=[{type: commonvoice, path: cv, answer_column: answer, instruction: Answer.}]"
    assert cfg(qa).data.speech[0].instruction == "Answer."
    with pytest.raises(ConfigError, match="answer_column and instruction go together"):
        cfg("data.speech=[{type: commonvoice, path: cv, answer_column: answer}]")
    with pytest.raises(ConfigError, match="only commonvoice speech sources"):
        cfg("data.speech=[{type: parquet, path: p, answer_column: answer, instruction: Answer.}]")
    with pytest.raises(ConfigError, match="CTC's labels are the CE targets"):
        cfg(qa, "loss.ctc_weight=0.3")


def test_commonvoice_other_tsv_and_missing_tsv(cv_dir, tmp_path):
    (cv_dir / "train.tsv").write_bytes((cv_dir / "validated.tsv").read_bytes().split(b"\n", 2)[0] + b"\n")
    assert rows_of(SourceConfig(type="commonvoice", path=str(cv_dir), tsv="train.tsv")) == []
    with pytest.raises(ValueError, match="dev.tsv not found"):
        rows_of(SourceConfig(type="commonvoice", path=str(cv_dir), tsv="dev.tsv"))


def test_parquet_with_embedded_bytes_and_relative_paths(tmp_path, clips):
    (tmp_path / "audio").mkdir()
    (tmp_path / "audio" / "b.mp3").write_bytes(clips[1])
    table = audio_table([{"bytes": clips[0], "path": "a.mp3"}, {"bytes": None, "path": "audio/b.mp3"}],
                        SENTENCES[:2])
    pq.write_table(table, tmp_path / "train-00000-of-00001.parquet")
    for path in (tmp_path / "train-00000-of-00001.parquet", tmp_path):
        rows = rows_of(SourceConfig(type="parquet", path=str(path)))
        assert [r.text for r in rows] == SENTENCES[:2] and [r.id for r in rows] == ["a.mp3", "audio/b.mp3"]
        assert rows[0].audio.data == clips[0] and rows[1].audio.path == str(tmp_path / "audio" / "b.mp3")
        np.testing.assert_array_equal(rows[1].audio.load(), load_audio_bytes(clips[1]))


def test_parquet_dir_of_files_and_array_audio(tmp_path, clips):
    pq.write_table(audio_table([{"bytes": clips[0], "path": None}], ["first"]), tmp_path / "part-0.parquet")
    wave = np.sin(np.arange(8000) / 5.0).astype(np.float32) * 0.5
    arr = pa.array([{"array": wave.tolist(), "sampling_rate": 8000}],
                   type=pa.struct([("array", pa.list_(pa.float32())), ("sampling_rate", pa.int64())]))
    pq.write_table(pa.table({"audio": arr, "text": ["second"]}), tmp_path / "part-1.parquet")
    pq.write_table(pa.table({"audio": arr, "sentence": ["third"]}), tmp_path / "part-2.parquet")
    with pytest.raises(ValueError, match="part-1.parquet: no column 'sentence'"):
        rows_of(SourceConfig(type="parquet", path=str(tmp_path)))
    (tmp_path / "part-1.parquet").unlink()
    rows = rows_of(SourceConfig(type="parquet", path=str(tmp_path)))
    assert [r.text for r in rows] == ["first", "third"]
    assert rows[1].audio.load().shape == (16000,)  # 1 s at 8 kHz, resampled


def test_save_to_disk_arrow_dir(tmp_path, clips):
    """datasets' save_to_disk: Arrow IPC *stream* shards listed in state.json."""
    tables = [audio_table([{"bytes": c, "path": f"clip{i}.mp3"}], [s])
              for i, (c, s) in enumerate(zip(clips[:2], SENTENCES[:2]))]
    names = [f"data-0000{i}-of-00002.arrow" for i in range(2)]
    for name, table in zip(names, tables):
        with pa.OSFile(str(tmp_path / name), "wb") as sink, pa.ipc.new_stream(sink, table.schema) as writer:
            writer.write_table(table)
    (tmp_path / "state.json").write_text(json.dumps({"_data_files": [{"filename": n} for n in names],
                                                     "_split": "train"}))
    (tmp_path / "dataset_info.json").write_text(json.dumps(HF_FEATURES["info"]))
    rows = rows_of(SourceConfig(type="parquet", path=str(tmp_path)))
    assert [r.text for r in rows] == SENTENCES[:2] and rows[1].audio.data == clips[1]


def test_qa_jsonl_both_forms(tmp_path):
    lines = [{"id": "v1", "conversations": [{"from": "system", "value": "Be terse."},
                                            {"from": "human", "value": "2+2?"}, {"from": "gpt", "value": "4"},
                                            {"from": "human", "value": "3+3?"}, {"from": "gpt", "value": "6"}]},
             {"conversations": [{"from": "human", "value": "Capital of Peru?"}, {"from": "gpt", "value": "Lima"}]},
             {"question": "Who wrote Hamlet?", "answer": "Shakespeare"}]
    (tmp_path / "qa.jsonl").write_text("\n".join(json.dumps(x) for x in lines) + "\n\n")
    rows = rows_of(SourceConfig(type="qa_jsonl", path=str(tmp_path / "qa.jsonl")), "text")
    assert all(isinstance(r, Row) and r.kind == "text" and r.audio is None for r in rows)
    assert rows[0].id == "v1" and [m["role"] for m in rows[0].messages] == \
        ["system", "user", "assistant", "user", "assistant"]
    assert rows[0].messages[0]["content"] == "Be terse."  # the row's own system prompt wins
    assert rows[1].messages == [{"role": "system", "content": PROMPT.system},
                                {"role": "user", "content": "Capital of Peru?"},
                                {"role": "assistant", "content": "Lima"}]
    assert rows[2].messages[1:] == [{"role": "user", "content": "Who wrote Hamlet?"},
                                    {"role": "assistant", "content": "Shakespeare"}]
    # A JSON array file (how some QA sets ship) reads the same.
    (tmp_path / "qa.json").write_text(json.dumps(lines))
    again = rows_of(SourceConfig(type="qa_jsonl", path=str(tmp_path / "qa.json")), "text")
    assert [r.messages for r in again] == [r.messages for r in rows]


def test_kind_mismatch_is_an_error(tmp_path):
    (tmp_path / "qa.jsonl").write_text(json.dumps({"question": "q", "answer": "a"}))
    with pytest.raises(ValueError, match="a text row in data.speech"):
        rows_of(SourceConfig(type="qa_jsonl", path=str(tmp_path / "qa.jsonl")), "speech")


def test_synthetic_speech_and_qa_are_deterministic():
    a = rows_of(SourceConfig(type="synthetic", num_rows=6, seed=3))
    b = rows_of(SourceConfig(type="synthetic", num_rows=6, seed=3))
    c = rows_of(SourceConfig(type="synthetic", num_rows=6, seed=4))
    assert [r.text for r in a] == [r.text for r in b] != [r.text for r in c]
    assert len({r.audio.synth[1] for r in a}) >= 4  # several voices
    np.testing.assert_array_equal(a[2].audio.load(), b[2].audio.load())
    assert a[2].audio.load().size > 8000
    qa = rows_of(SourceConfig(type="synthetic", num_rows=20), "text")
    assert all(r.kind == "text" and r.messages[-1]["content"] for r in qa)
    sums = [r for r in qa if "plus" in r.messages[1]["content"]]
    assert sums and all(str(eval(r.messages[1]["content"][8:-1].replace("plus", "+"))) in r.text for r in sums)
    assert any("capital" in r.text for r in qa)


def test_bad_rows_are_reported_not_raised(cv_bad_dir):
    rows = rows_of(SourceConfig(type="commonvoice", path=str(cv_bad_dir)))
    bad = [(r.reason, r.where.rsplit(" ", 1)[-1]) for r in rows if isinstance(r, BadRow)]
    # missing and empty files and empty sentences are found without decoding; corrupt audio needs the scan.
    assert bad == [("missing_file", "6"), ("empty_audio", "7"), ("empty_text", "9")]
