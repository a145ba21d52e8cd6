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
