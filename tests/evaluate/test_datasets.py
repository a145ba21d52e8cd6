"""SD-QA and HeySQuAD readers on fixture files written in exactly the hub layouts."""

import io

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import soundfile as sf

from aura_jax.evaluate.datasets import SDQA_DIALECTS, read_heysquad, read_sdqa

AUDIO = pa.struct([("bytes", pa.binary()), ("path", pa.string())])


def wav_bytes(seconds=0.3, freq=220.0):
    t = np.arange(int(16000 * seconds)) / 16000
    buf = io.BytesIO()
    sf.write(buf, (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32), 16000, format="WAV")
    return buf.getvalue()


def test_sdqa_dev_rows_with_answers_times_dialects(tmp_path):
    (tmp_path / "data").mkdir()
    cells = lambda n: pa.array([{"bytes": wav_bytes(freq=200 + 10 * i), "path": f"{i}.wav"} for i in range(n)], AUDIO)
    table = pa.table({"id": ["q1", "q2", "q3"], "question": ["Who?", "What?", "Where?"],
                      "answers": [["Ann"], [], ["Oslo", "Norway"]], **{d: cells(3) for d in SDQA_DIALECTS}})
    pq.write_table(table, tmp_path / "data" / "dev-00000-of-00001.parquet")
    pq.write_table(table.slice(0, 1), tmp_path / "data" / "test-00000-of-00001.parquet")
    items = read_sdqa(tmp_path / "data")
    assert len(items) == 2 * 11  # q2 has no answer; the test split is not read
    assert {i.dialect for i in items} == set(SDQA_DIALECTS)
    oslo = next(i for i in items if i.id == "q3" and i.dialect == "kenya")
    assert oslo.references == ["Oslo", "Norway"] and oslo.question == "Where?"
    assert oslo.audio.load().shape == (4800,)


def test_heysquad_validation_skips_impossible_and_empty(tmp_path):
    answers = pa.list_(pa.struct([("text", pa.string()), ("answer_start", pa.int32())]))
    table = pa.table({
        "id": ["a", "b", "c"], "question": ["q a", "q b", "q c"], "context": ["ctx"] * 3,
        "answers": pa.array([[{"text": "forty", "answer_start": 3}], [], [{"text": "x", "answer_start": 0}]], answers),
        "is_impossible": [False, False, True],
        "audio": pa.array([{"bytes": wav_bytes(), "path": "a.wav"}] * 3, AUDIO)})
    pq.write_table(table, tmp_path / "validation-00000-of-00001.parquet")
    items = read_heysquad(tmp_path)
    assert [i.id for i in items] == ["a"] and items[0].references == ["forty"] and items[0].context == "ctx"


def test_sdqa_layout_with_other_voice_columns_reads_every_audio_column(tmp_path):
    """Sets spoken by other voices (make-corpus) keep the layout; their audio columns are the dialects."""
    audio = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
    cell = {"bytes": b"RIFF", "path": "a.wav"}
    pq.write_table(pa.table({"id": ["1", "2"], "question": ["q1", "q2"], "answers": [["a"], []],
                             "en_gb_scotland": pa.array([cell, cell], audio), "en_029": pa.array([cell, None], audio)}),
                   tmp_path / "dev.parquet")
    items = read_sdqa(tmp_path / "dev.parquet")
    assert [(i.id, i.dialect) for i in items] == [("1", "en_gb_scotland"), ("1", "en_029")]
