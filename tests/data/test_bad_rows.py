"""Bad rows are skipped and counted by reason (or fatal in strict mode); the audio scan is cached."""

import json
import os

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import aura_jax.data.scan as scan
from aura_jax.data import DataError, TrainData
from tests.data.datafiles import SENTENCES, cfg, mp3_bytes, write_commonvoice


def data_for(tokenizer, tmp_path, *overrides):
    config = cfg("batch_size=2", f"data.cache_dir={tmp_path / 'cache'}", *overrides)
    return TrainData(config, tokenizer, verbose=False)


def test_commonvoice_bad_rows_counted(tokenizer, cv_bad_dir, tmp_path, capsys):
    config = cfg("batch_size=2", f"data.cache_dir={tmp_path / 'cache'}",
                 f"data.speech=[{{type: commonvoice, path: '{cv_bad_dir}'}}]")
    data = TrainData(config, tokenizer)
    assert data.stats["skipped"] == {"missing_file": 1, "empty_audio": 1, "unreadable_audio": 1, "empty_text": 1}
    assert data.stats["speech_rows"] == 4 and data.stats["text_rows"] == 0
    assert sorted(e.id for e in data.examples) == [f"good_{i}.mp3" for i in range(4)]
    out = capsys.readouterr().out
    assert out.count("skipped:") == 1 and "unreadable_audio=1" in out and "4 speech + 0 text rows" in out


def test_strict_mode_names_file_and_row(tokenizer, cv_bad_dir, tmp_path, clips):
    with pytest.raises(DataError, match=r"validated.tsv line 6: missing_file .*missing.mp3"):
        data_for(tokenizer, tmp_path, "data.strict=true", f"data.speech=[{{type: commonvoice, path: '{cv_bad_dir}'}}]")
    only_corrupt = write_commonvoice(tmp_path / "cv", [("ok.mp3", "fine", clips[0]),
                                                       ("broken.mp3", "broken", b"\xff\xfb" + b"\x00junk" * 99)])
    with pytest.raises(DataError, match=r"cv/validated.tsv line 3: unreadable_audio .*broken.mp3"):
        data_for(tokenizer, tmp_path, "data.strict=true", f"data.speech=[{{type: commonvoice, path: '{only_corrupt}'}}]")


def test_silent_audio_and_non_utf8_counted(tokenizer, tmp_path, clips):
    quiet = mp3_bytes(np.full(16000, 1e-6, np.float32) * np.sign(np.sin(np.arange(16000))))
    cv = write_commonvoice(tmp_path / "cv", [("a.mp3", SENTENCES[0], clips[0]), ("b.mp3", SENTENCES[1], clips[1]),
                                             ("quiet.mp3", "nothing to hear", quiet),
                                             ("latin1.mp3", "caf\xe9 au lait".encode("latin-1"), clips[2])])
    qa = tmp_path / "qa.jsonl"
    qa.write_bytes(b'{"question": "q1?", "answer": "a1"}\n{"question": "caf\xe9?", "answer": "x"}\n'
                   b'{"question": "q2?", "answer": "a2"}\n{not json\n{"question": "q3?", "answer": ""}\n')
    texts = pa.array([SENTENCES[2].encode(), b"\xff\xfe bad"], pa.binary())
    cells = pa.array([{"bytes": clips[2], "path": "c.mp3"}, {"bytes": clips[3], "path": "d.mp3"}],
                     type=pa.struct([("bytes", pa.binary()), ("path", pa.string())]))
    pq.write_table(pa.table({"audio": cells, "sentence": texts}), tmp_path / "p.parquet")
    data = data_for(tokenizer, tmp_path, f"data.speech=[{{type: commonvoice, path: '{cv}'}}, "
                                         f"{{type: parquet, path: '{tmp_path / 'p.parquet'}'}}]",
                    f"data.text=[{{type: qa_jsonl, path: '{qa}'}}]")
    assert data.stats["skipped"] == {"silent_audio": 1, "non_utf8": 3, "bad_json": 1, "empty_text": 1}
    assert (data.stats["speech_rows"], data.stats["text_rows"]) == (3, 2)


def test_too_long_rows_skipped(tokenizer, tmp_path):
    qa = tmp_path / "qa.jsonl"
    qa.write_text("\n".join(json.dumps({"question": "Say it." + " again and again" * n, "answer": "ok"})
                            for n in (0, 1, 40, 60)))
    lengths = [len(tokenizer.conversation_ids([{"role": "system", "content": "You are a helpful assistant."},
                                               {"role": "user", "content": "Say it." + " again and again" * n},
                                               {"role": "assistant", "content": "ok"}])[0]) for n in (0, 1, 40)]
    data = data_for(tokenizer, tmp_path, f"data.text=[{{type: qa_jsonl, path: '{qa}'}}]",
                    f"data.max_text_tokens={lengths[2]}")
    assert data.stats["skipped"] == {"too_long": 1} and data.stats["text_rows"] == 3


def test_limit_takes_first_good_rows(tokenizer, cv_bad_dir, tmp_path):
    data = data_for(tokenizer, tmp_path, f"data.speech=[{{type: commonvoice, path: '{cv_bad_dir}', limit: 3}}]")
    assert [e.id for e in data.examples] == ["good_0.mp3", "good_1.mp3", "good_2.mp3"]


def test_scan_is_cached_by_path_size_mtime(tokenizer, cv_bad_dir, tmp_path, monkeypatch):
    overrides = (f"data.speech=[{{type: commonvoice, path: '{cv_bad_dir}'}}]",)
    first = data_for(tokenizer, tmp_path, *overrides)
    calls = []
    real = scan.scan_one
    monkeypatch.setattr(scan, "scan_one", lambda ref: calls.append(ref.name) or real(ref))
    second = data_for(tokenizer, tmp_path, *overrides)
    assert calls == [] and second.stats == first.stats
    assert [e.samples for e in second.examples] == [e.samples for e in first.examples]
    # Rewriting a clip (new mtime) rescans that clip only.
    clip = cv_bad_dir / "clips" / "good_1.mp3"
    stat = clip.stat()
    os.utime(clip, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    data_for(tokenizer, tmp_path, *overrides)
    assert calls == [str(clip)]


def test_clip_paths_stay_inside_the_clips_folder_and_short_lines_are_counted(tokenizer, tmp_path, clips):
    """A TSV cannot make the loader open files outside `clips/` (even real audio), and a line with
    too few columns is a malformed row, not an empty transcript."""
    (tmp_path / "outside.mp3").write_bytes(clips[1])  # real audio, but not in the release
    cv = write_commonvoice(tmp_path / "cv", [("a.mp3", SENTENCES[0], clips[0]),
                                             ("../../outside.mp3", "escape by dots", None),
                                             (str(tmp_path / "outside.mp3"), "escape by absolute path", None),
                                             ("b.mp3", SENTENCES[2], clips[2])])
    with open(cv / "validated.tsv", "ab") as f:
        f.write(b"c9\tshort.mp3\n")
    data = data_for(tokenizer, tmp_path, f"data.speech=[{{type: commonvoice, path: '{cv}'}}]")
    assert data.stats["skipped"] == {"outside_clips_dir": 2, "malformed_row": 1}
    assert sorted(e.id for e in data.examples) == ["a.mp3", "b.mp3"]


def test_a_corrupt_parquet_file_is_one_error_naming_it(tokenizer, tmp_path):
    bad = tmp_path / "shards" / "train-00000.parquet"
    bad.parent.mkdir()
    bad.write_bytes(b"not parquet")  # pyarrow: "smaller than the minimum file footer"
    with pytest.raises(DataError, match=r"train-00000.parquet: not a readable parquet file") as e:
        data_for(tokenizer, tmp_path, f"data.speech=[{{type: parquet, path: '{bad.parent}'}}]")
    assert "\n" not in str(e.value)


def test_mp3_decoder_notes_do_not_reach_the_console(tmp_path, clips, capfd):
    """libmpg123 prints 'Note: Illegal Audio-MPEG-Header ...' to fd 2 for a damaged stream; the clip
    is reported once, as a bad row, the console stays clean, other stderr output passes through."""
    from aura_jax.audio import _decoder_notes_silenced
    from aura_jax.data.sources import AudioRef

    holed = tmp_path / "holed.mp3"
    holed.write_bytes(clips[1][:2000] + bytes(1500) + clips[1][2000:])  # 1.5 kB of zeros mid-stream
    reason, _ = scan.scan_one(AudioRef(key="holed", name="holed", path=str(holed)))
    with _decoder_notes_silenced():
        os.write(2, b"Note: a decoder note\nsomething else on stderr\n")
    err = capfd.readouterr().err
    assert "Illegal Audio-MPEG-Header" not in err and "Note:" not in err
    assert "something else on stderr" in err
    assert reason == "unreadable_audio"
