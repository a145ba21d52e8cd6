"""`aura-jax eval` never loses work and never lies (issue 12, items 2, 3, 6-9): bad clips are skipped and
counted by reason (or fatal with --strict), --split picks the file, a crash keeps what was decoded, and bad
requests are one line.

Most tests replace the model with a fake system (`fake_system`): what they check is the reading, checking,
counting and writing around it. One decodes with the tiny run for real."""

import io
import json
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import soundfile as sf
import yaml

from aura_jax.cli import main
from aura_jax.evaluate import harness
from tests.data.datafiles import SENTENCES, mp3_bytes, speech, write_commonvoice

AUDIO = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
# test.tsv: three good clips among one of each bad kind (rows_read 9, scored 3).
SKIPPED = {"audio_too_long": 1, "empty_audio": 2, "missing_file": 1, "silent_audio": 1, "unreadable_audio": 1}


def wav_bytes(samples: np.ndarray) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, samples.astype(np.float32), 16000, format="WAV")
    return buf.getvalue()


def tone(seconds: float) -> np.ndarray:
    return 0.3 * np.sin(2 * np.pi * 220 * np.arange(int(16000 * seconds)) / 16000)


@pytest.fixture(scope="module")
def good_clips():
    return [mp3_bytes(speech(s)) for s in SENTENCES[:3]]


@pytest.fixture(scope="module")
def cv_eval_dir(tmp_path_factory, good_clips):
    """A CommonVoice-style folder: test.tsv with good and bad rows, dev.tsv and validated.tsv with other clips."""
    root = tmp_path_factory.mktemp("cv_eval")
    test = [("good_0.mp3", SENTENCES[0], good_clips[0]),
            ("missing.mp3", "This clip was never written.", None),  # missing_file (read)
            ("good_1.mp3", SENTENCES[1], good_clips[1]),
            ("empty.mp3", "This clip is an empty file.", b""),  # empty_audio (read: 0 bytes)
            ("corrupt.mp3", "This clip is not audio.", b"ID3\x03\x00garbage" + bytes(range(256)) * 8),  # unreadable
            ("zero.wav", "This clip has no samples.", wav_bytes(np.zeros(0))),  # empty_audio (scan)
            ("silent.wav", "This clip is silence.", wav_bytes(np.zeros(8000))),  # silent_audio
            ("long.wav", "This clip is longer than the window.", wav_bytes(tone(30.5))),  # audio_too_long (30 s)
            ("good_2.mp3", SENTENCES[2], good_clips[2])]
    write_commonvoice(root, test, tsv="test.tsv")
    write_commonvoice(root, [("dev_0.mp3", SENTENCES[3], good_clips[0]), ("dev_1.mp3", SENTENCES[0], good_clips[1])],
                      tsv="dev.tsv")
    write_commonvoice(root, [("train_0.mp3", SENTENCES[1], good_clips[2])], tsv="validated.tsv")
    return root


class FakeSystem:
    """Answers each item with its first reference; `fail_on`: the call that raises (a crash mid-run)."""

    def __init__(self, fail_on=None):
        self.calls, self.fail_on, self.lengths = 0, fail_on, []

    def __call__(self, waves, items):
        self.calls += 1
        if self.calls == self.fail_on:
            raise RuntimeError("simulated crash")
        self.lengths += [len(w) for w in waves]
        return [it.references[0] for it in items]


@pytest.fixture
def fake_system(monkeypatch):
    def install(**kw):
        fake = FakeSystem(**kw)
        monkeypatch.setattr(harness, "make_system", lambda *a, **k: (fake, "Transcribe the speech."))
        return fake

    return install


def eval_args(target, data, out, *extra):
    return ["eval", str(target), "--task", "asr", "--data", str(data), "--out", str(out), "--batch-size", "2",
            "--max-new-tokens", "2", *extra]


def read_jsonl(path):
    return [json.loads(line) for line in Path(path).read_text().splitlines()]


def one_line_error(capsys) -> str:
    """The error line eval printed last (a progress bar may come before it); it is one line."""
    err = capsys.readouterr().err
    start = err.rfind("aura-jax eval: error: ")
    assert start >= 0 and "\n" not in err[start:].strip(), err
    return err[start:].strip()


def fails(capsys, args) -> str:
    """The one-line error of `aura-jax eval` with `args` (exit status 2); earlier output (progress bars) cleared."""
    capsys.readouterr()
    assert main(args) == 2
    return one_line_error(capsys)


# ---------------------------------------------------------------------------
# Items 2 and 3: bad clips are skipped and counted, the report says so
# ---------------------------------------------------------------------------
def test_asr_scores_only_good_clips_and_counts_the_rest(tiny_run_dir, cv_eval_dir, tmp_path, capsys):
    """The real tiny run: decoding never sees a bad clip, and the report accounts for every row."""
    out = tmp_path / "asr"
    assert main(eval_args(tiny_run_dir, cv_eval_dir, out)) == 0
    assert [r["id"] for r in read_jsonl(out / "predictions.jsonl")] == ["good_0.mp3", "good_1.mp3", "good_2.mp3"]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["data"] == str(cv_eval_dir / "test.tsv")  # the default split: test.tsv, not validated.tsv
    assert (summary["rows_read"], summary["scored"], summary["items"]) == (9, 3, 3)
    assert summary["skipped"] == SKIPPED and summary["excluded"] == {} and summary["audio_window_s"] == 30.0
    skipped = read_jsonl(out / "skipped.jsonl")
    assert sorted(r["reason"] for r in skipped) == sorted(k for k, n in SKIPPED.items() for _ in range(n))
    too_long = next(r for r in skipped if r["reason"] == "audio_too_long")
    assert too_long["detail"].endswith("long.wav: 30.5 s, the window is 30.0 s")
    report = (out / "results.md").read_text()
    assert (f"data {cv_eval_dir / 'test.tsv'}: 9 rows read, 3 scored, 6 skipped (audio_too_long 1, empty_audio 2, "
            "missing_file 1, silent_audio 1, unreadable_audio 1); see skipped.jsonl.") in report
    assert "9 rows read, 3 scored" in capsys.readouterr().out


def test_strict_makes_the_first_bad_row_a_one_line_error_before_the_model_loads(tiny_run_dir, cv_eval_dir,
                                                                               tmp_path, monkeypatch, capsys):
    def no_model(*a, **k):
        raise AssertionError("the model was loaded before the rows were checked")

    monkeypatch.setattr(harness, "make_system", no_model)
    assert main(eval_args(tiny_run_dir, cv_eval_dir, tmp_path / "strict", "--strict")) == 2
    err = one_line_error(capsys)
    assert f"{cv_eval_dir / 'test.tsv'} line 3: missing_file ({cv_eval_dir / 'clips' / 'missing.mp3'})" in err
    assert "--strict" in err


def test_strict_names_a_clip_that_fails_the_audio_scan(tiny_run_dir, cv_eval_dir, good_clips, tmp_path, fake_system,
                                                       capsys):
    fake = fake_system()
    root = write_commonvoice(tmp_path / "cv", [("good.mp3", SENTENCES[0], good_clips[0]),
                                               ("corrupt.mp3", "not audio", b"ID3\x03\x00" + bytes(range(256)) * 4)],
                             tsv="test.tsv")
    err = fails(capsys, eval_args(tiny_run_dir, root, tmp_path / "a", "--strict"))
    assert f"{root / 'test.tsv'} line 3: unreadable_audio ({root / 'clips' / 'corrupt.mp3'})" in err
    assert fake.calls == 0
    # Rows past --limit are not read, so not checked either; clean rows pass --strict.
    assert main(eval_args(tiny_run_dir, root, tmp_path / "b", "--strict", "--limit", "1")) == 0
    assert main(eval_args(tiny_run_dir, cv_eval_dir, tmp_path / "c", "--strict", "--split", "dev")) == 0
    assert fake.calls == 2


def test_a_crash_mid_run_keeps_the_batches_already_decoded(tiny_run_dir, cv_eval_dir, tmp_path, fake_system):
    fake_system(fail_on=2)
    out = tmp_path / "crash"
    with pytest.raises(RuntimeError, match="simulated crash"):
        main(eval_args(tiny_run_dir, cv_eval_dir, out))
    rows = read_jsonl(out / "predictions.jsonl")
    assert [r["id"] for r in rows] == ["good_0.mp3", "good_1.mp3"]  # batch 1, written before batch 2 ran
    assert rows[0]["prediction"] == SENTENCES[0]
    assert not (out / "summary.json").exists()  # an unfinished evaluation has no summary
    assert {r["reason"] for r in read_jsonl(out / "skipped.jsonl")} >= {"missing_file", "empty_audio"}


def test_a_rerun_into_the_same_folder_does_not_keep_a_stale_summary(tiny_run_dir, cv_eval_dir, tmp_path,
                                                                    fake_system):
    out = tmp_path / "again"
    fake_system()
    assert main(eval_args(tiny_run_dir, cv_eval_dir, out)) == 0
    fake_system(fail_on=1)
    with pytest.raises(RuntimeError):
        main(eval_args(tiny_run_dir, cv_eval_dir, out))
    assert not (out / "summary.json").exists() and not (out / "results.md").exists()
    assert (out / "predictions.jsonl").read_text() == ""


def test_a_run_that_fails_before_decoding_keeps_the_previous_evaluation(tiny_run_dir, cv_eval_dir, tmp_path,
                                                                        fake_system, capsys):
    out = tmp_path / "kept"
    fake_system()
    assert main(eval_args(tiny_run_dir, cv_eval_dir, out)) == 0
    before = {name: (out / name).read_text() for name in ("summary.json", "predictions.jsonl", "results.md")}
    assert "--strict" in fails(capsys, eval_args(tiny_run_dir, cv_eval_dir, out, "--strict"))
    assert {name: (out / name).read_text() for name in before} == before
    (tmp_path / "a_file").write_text("")
    assert f"--out {tmp_path / 'a_file'}: is a file, not a directory" in fails(
        capsys, eval_args(tiny_run_dir, cv_eval_dir, tmp_path / "a_file"))


def test_clips_longer_than_the_window_never_reach_the_model(tiny_run_dir, cv_eval_dir, tmp_path, fake_system):
    fake = fake_system()
    assert main(eval_args(tiny_run_dir, cv_eval_dir, tmp_path / "w")) == 0
    assert fake.lengths and max(fake.lengths) <= 3000 * 160 and min(fake.lengths) > 0


def test_split_reads_that_tsv_and_never_falls_back_to_validated(tiny_run_dir, cv_eval_dir, tmp_path, fake_system,
                                                               capsys):
    fake_system()
    out = tmp_path / "dev"
    assert main(eval_args(tiny_run_dir, cv_eval_dir, out, "--split", "dev")) == 0
    assert [r["id"] for r in read_jsonl(out / "predictions.jsonl")] == ["dev_0.mp3", "dev_1.mp3"]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["data"] == str(cv_eval_dir / "dev.tsv") and summary["split"] == "dev"
    assert (summary["rows_read"], summary["scored"], summary["skipped"]) == (2, 2, {})
    assert summary["table"]["wer"]["all"] == 0.0  # the fake answers with the reference

    err = fails(capsys, eval_args(tiny_run_dir, cv_eval_dir, tmp_path / "x", "--split", "train"))
    assert "no train.tsv for --split train (TSVs here: dev.tsv, test.tsv, validated.tsv)" in err

    no_test = tmp_path / "cv_no_test"  # a release without test.tsv: no default, the TSVs are listed
    shutil.copytree(cv_eval_dir, no_test, ignore=shutil.ignore_patterns("test.tsv"))
    err = fails(capsys, eval_args(tiny_run_dir, no_test, tmp_path / "y"))
    assert "no test.tsv (TSVs here: dev.tsv, validated.tsv); pass --split NAME to read NAME.tsv" in err


def test_parquet_split_reads_only_that_splits_files(tiny_run_dir, tmp_path, fake_system, good_clips, capsys):
    fake_system()
    data = tmp_path / "asr_parquet" / "data"
    data.mkdir(parents=True)
    for split, sentences in (("train", SENTENCES[:3]), ("test", SENTENCES[3:])):
        cells = [{"bytes": c, "path": f"{split}{i}.mp3"} for i, c in enumerate(good_clips[:len(sentences)])]
        pq.write_table(pa.table({"audio": pa.array(cells, AUDIO), "sentence": sentences}),
                       data / f"{split}-00000-of-00001.parquet")
    out = tmp_path / "pq"
    assert main(eval_args(tiny_run_dir, data.parent, out)) == 0  # default: test
    summary = json.loads((out / "summary.json").read_text())
    assert (summary["rows_read"], summary["scored"]) == (1, 1) and "test-00000-of-00001.parquet" in summary["data"]
    assert main(eval_args(tiny_run_dir, data.parent, out, "--split", "train")) == 0
    assert json.loads((out / "summary.json").read_text())["rows_read"] == 3
    err = fails(capsys, eval_args(tiny_run_dir, data.parent, out, "--split", "validation"))
    assert "no file of split 'validation' (files: data/test-00000-of-00001.parquet, " in err
    train_file = data / "train-00000-of-00001.parquet"  # a file is read as given; a --split must agree with it
    assert main(eval_args(tiny_run_dir, train_file, out)) == 0
    assert json.loads((out / "summary.json").read_text())["data"] == str(train_file)
    assert "whose name is not of split 'test'" in fails(capsys, eval_args(tiny_run_dir, train_file, out, "--split",
                                                                          "test"))


def test_sdqa_bad_audio_cells_are_skipped_and_unanswered_rows_counted(tiny_run_dir, tmp_path, fake_system):
    fake_system()
    good = {"bytes": wav_bytes(tone(0.5)), "path": "a.wav"}
    corrupt = {"bytes": b"RIFF not really a wav", "path": "b.wav"}
    pq.write_table(pa.table({"id": ["q1", "q2"], "question": ["who?", "what?"], "answers": [["Ann"], []],
                             "voice_a": pa.array([good, good], AUDIO), "voice_b": pa.array([corrupt, good], AUDIO)}),
                   tmp_path / "dev.parquet")
    out = tmp_path / "sdqa"
    assert main(["eval", str(tiny_run_dir), "--task", "sdqa", "--data", str(tmp_path / "dev.parquet"), "--out",
                 str(out), "--batch-size", "2"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert (summary["rows_read"], summary["scored"]) == (4, 1)
    assert summary["skipped"] == {"unreadable_audio": 1} and summary["excluded"] == {"no_answer": 2}
    assert [(r["id"], r["dialect"]) for r in read_jsonl(out / "predictions.jsonl")] == [("q1", "voice_a")]
    assert "4 rows read, 1 scored, 1 skipped (unreadable_audio 1), 2 excluded (no_answer)" in \
        (out / "results.md").read_text()


def test_nothing_usable_writes_the_counts_then_says_so(tiny_run_dir, tmp_path, fake_system, capsys):
    fake = fake_system()
    root = write_commonvoice(tmp_path / "cv", [("gone.mp3", "never written", None)], tsv="test.tsv")
    out = tmp_path / "none"
    err = fails(capsys, eval_args(tiny_run_dir, root, out))
    assert "none of the 1 rows read could be scored (missing_file=1)" in err
    assert json.loads((out / "summary.json").read_text())["skipped"] == {"missing_file": 1} and fake.calls == 0


# ---------------------------------------------------------------------------
# Items 6 and 8: one-line errors
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("flag,value,message", [
    ("--batch-size", "0", "--batch-size must be at least 1 (got 0)"),
    ("--batch-size", "-3", "--batch-size must be at least 1 (got -3)"),
    ("--limit", "0", "--limit must be at least 1 (got 0)"),
    ("--limit", "-1", "--limit must be at least 1 (got -1)"),
])
def test_non_positive_sizes_are_one_line_errors(tiny_run_dir, cv_eval_dir, tmp_path, flag, value, message, capsys):
    args = eval_args(tiny_run_dir, cv_eval_dir, tmp_path / "o")
    args[args.index("--batch-size"):args.index("--batch-size") + 2] = []
    assert main([*args, flag, value]) == 2
    assert message in one_line_error(capsys)


def test_a_missing_data_path_says_so(tiny_run_dir, tmp_path, capsys):
    for task in ("asr", "sdqa"):
        assert main(["eval", str(tiny_run_dir), "--task", task, "--data", str(tmp_path / "nowhere")]) == 2
        err = one_line_error(capsys)
        assert f"--data {tmp_path / 'nowhere'}: no such file or directory" in err and "parquet source" not in err


def test_a_corrupt_parquet_file_is_one_line_naming_it(tiny_run_dir, tmp_path, capsys):
    bad = tmp_path / "pq" / "x.parquet"
    bad.parent.mkdir()
    bad.write_bytes(b"\x8a\x01\x07garbag")  # 10 bytes, not parquet
    for task, data in (("asr", bad.parent), ("sdqa", bad)):
        assert main(["eval", str(tiny_run_dir), "--task", task, "--data", str(data)]) == 2
        assert str(bad) in one_line_error(capsys)


# ---------------------------------------------------------------------------
# Item 7: config overrides for a run, refused for an export
# ---------------------------------------------------------------------------
def test_overrides_fix_a_run_whose_config_holds_a_relative_model_path(tiny_run_dir, tiny_qwen2_dir, cv_eval_dir,
                                                                    tmp_path, monkeypatch, capsys):
    moved = tmp_path / "moved-run"
    shutil.copytree(tiny_run_dir, moved, ignore=shutil.ignore_patterns("eval", "tensorboard"))
    config = yaml.safe_load((moved / "config.yaml").read_text())
    config["model"]["llm"] = "cache/tiny-qwen2"  # valid only where the run was started
    (moved / "config.yaml").write_text(yaml.safe_dump(config))
    monkeypatch.chdir(tmp_path)  # elsewhere: the relative path does not resolve

    assert main(eval_args(moved, cv_eval_dir, tmp_path / "a", "--split", "dev")) == 2
    err = one_line_error(capsys)
    assert f"model.llm=cache/tiny-qwen2 (relative to {tmp_path})" in err and "model.llm=/path/to/qwen2" in err
    assert not (tmp_path / "cache").exists()  # no random checkpoint built in its place

    out = tmp_path / "b"
    assert main(["eval", str(moved), f"model.llm={tiny_qwen2_dir}", "--task", "asr", "--data", str(cv_eval_dir),
                 "--split", "dev", "--out", str(out), "--batch-size", "2", "--max-new-tokens", "2"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["scored"] == 2 and summary["overrides"] == [f"model.llm={tiny_qwen2_dir}"]

    assert "no_such_key" in fails(capsys, ["eval", str(moved), "model.no_such_key=1", "--task", "asr", "--data",
                                           str(cv_eval_dir)])


def test_overrides_on_an_export_are_a_one_line_error(tmp_path, cv_eval_dir, capsys):
    export = tmp_path / "export"
    export.mkdir()
    (export / "aura_config.json").write_text(json.dumps({"base_model": "x", "prompt": {"asr_instruction": "T."},
                                                         "audio": {"num_frames": 3000}}))
    assert main(["eval", str(export), "model.llm=/x", "--task", "asr", "--data", str(cv_eval_dir)]) == 2
    assert "is an export: config overrides (model.llm=/x) apply to training run directories only" in \
        one_line_error(capsys)
