"""CFM and PEDANTS through qa-metrics: scored from a local copy of its files, one line when offline."""

import sys

import pytest

from aura_jax.config import ConfigError
from aura_jax.evaluate.answer_judges import OFFLINE, load_answer_judges


def test_judges_from_a_local_copy_agree_with_the_judgments_they_learned(qa_metrics_dir, judged_answers):
    judges = load_answer_judges(str(qa_metrics_dir))
    assert set(judges.judges) == {"cfm", "pedants"} and str(qa_metrics_dir) in judges.status
    for question, reference, candidate, correct in judged_answers:
        assert judges.score(question, candidate, [reference]) == {"cfm": float(correct), "pedants": float(correct)}


def test_any_reference_counts_and_pedants_accepts_a_contained_reference(qa_metrics_dir):
    judges = load_answer_judges(str(qa_metrics_dir))
    q, pred = "who wrote hamlet", "it was william shakespeare"
    assert judges.score(q, pred, ["dickens"]) == {"cfm": 0.0, "pedants": 0.0}
    assert judges.score(q, pred, ["dickens", "shakespeare"])["pedants"] == 1.0  # contained: accepted
    assert judges.score("how many legs has a spider", "8 legs", ["six", "eight"])["cfm"] == 1.0


def test_offline_without_a_local_copy_is_one_line_and_no_judges(monkeypatch, tmp_path):
    import qa_metrics.cfm
    import qa_metrics.pedant

    for module in (qa_metrics.cfm, qa_metrics.pedant):  # no network, and an empty package folder
        monkeypatch.setattr(module, "download_link", lambda *a, **k: None)
        monkeypatch.setattr(module, "__file__", str(tmp_path / "pkg" / "module.py"))
    judges = load_answer_judges(None)
    assert judges.judges == {} and judges.status == OFFLINE and "\n" not in OFFLINE
    assert "--qa-metrics-dir" in OFFLINE


def test_not_installed_is_one_line(monkeypatch):
    monkeypatch.setitem(sys.modules, "qa_metrics.cfm", None)  # import fails as if absent
    judges = load_answer_judges(None)
    assert judges.judges == {} and "qa-metrics is not installed" in judges.status


def test_a_local_copy_missing_a_file_names_it(qa_metrics_dir):
    (qa_metrics_dir / "pedants" / "rule_classifier.pkl").unlink()
    with pytest.raises(ConfigError, match="rule_classifier.pkl"):
        load_answer_judges(str(qa_metrics_dir))
    with pytest.raises(ConfigError, match="not a directory"):
        load_answer_judges(str(qa_metrics_dir / "nowhere"))


@pytest.mark.parametrize("where,mode", [(".", 0o777), (".", 0o775), ("cfm", 0o757),
                                        ("pedants/lr_classifier.pkl", 0o666),
                                        ("cfm/tf-idf_vectorizer.pkl", 0o646), ("nltk_data", 0o777)])
def test_a_directory_or_pkl_others_could_write_is_refused(qa_metrics_dir, where, mode):
    """Unpickling runs code from the files: refused before any is loaded, naming the path."""
    path = qa_metrics_dir / where
    path.chmod(mode)
    import joblib

    def never(*a, **k):
        raise AssertionError("a .pkl was loaded")

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(joblib, "load", never)
        with pytest.raises(ConfigError, match="writable by group or others") as e:
            load_answer_judges(str(qa_metrics_dir))
    assert f"--qa-metrics-dir: {path} is writable" in str(e.value) and "\n" not in str(e.value)


def test_a_directory_owned_by_someone_else_is_refused(qa_metrics_dir, monkeypatch):
    import os

    monkeypatch.setattr(os, "getuid", lambda: os.stat(qa_metrics_dir).st_uid + 1)
    with pytest.raises(ConfigError, match=f"{qa_metrics_dir} is owned by uid .*not by you.*refused"):
        load_answer_judges(str(qa_metrics_dir))


def test_eval_refuses_a_world_writable_qa_metrics_dir_in_one_line(qa_metrics_dir, tiny_run_dir, tmp_path, capsys):
    from aura_jax.cli import main

    qa_metrics_dir.chmod(0o777)
    assert main(["eval", str(tiny_run_dir), "--task", "sdqa", "--data", str(tmp_path), "--qa-metrics-dir",
                 str(qa_metrics_dir)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (f"aura-jax eval: error: --qa-metrics-dir: {qa_metrics_dir} is writable by group or others "
                   f"(mode 777); its .pkl files would be unpickled, which runs code from them: refused "
                   f"(chmod go-w {qa_metrics_dir})")
