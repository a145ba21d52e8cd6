"""PEDANTS and CFM, the paper's answer-equivalence metrics (CFM on SD-QA, PEDANTS on
HeySQuAD), through the `qa-metrics` package.

We pin qa-metrics 0.2.26: the last release with both `CFMatcher` and `PEDANT`
(later ones dropped CFM). Both are scikit-learn classifiers the package
downloads at construction, and both lemmatise with nltk, whose data it also
downloads (at import). Offline neither download works: we detect that and say
so in one line, and the harness goes on with its built-in metrics. A local copy
is passed as `--qa-metrics-dir DIR`:

    DIR/cfm/lr_classifier.pkl, DIR/cfm/tf-idf_vectorizer.pkl
    DIR/pedants/lr_classifier.pkl, tf-idf_vectorizer.pkl, rule_classifier.pkl, type_classifier.pkl
    DIR/nltk_data/   (wordnet, omw-1.4, averaged_perceptron_tagger_eng, punkt_tab)

i.e. the files `CFMatcher()` and `PEDANT()` write into the package's
`classifier/` folder when online (same names, different models: keep them apart).
A judgment is 1 when the package says the prediction matches some reference.

The .pkl files are unpickled (joblib), which runs code stored in them: a
directory is refused unless DIR, DIR/cfm, DIR/pedants and every .pkl file in
them are owned by the current user and not writable by group or others.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import os
from pathlib import Path
from typing import Callable

from aura_jax.config import ConfigError

QA_METRICS_VERSION = "0.2.26"
FILES = {
    "cfm": {"model": "lr_classifier.pkl", "tokenizer": "tf-idf_vectorizer.pkl"},
    "pedants": {"model": "lr_classifier.pkl", "tokenizer": "tf-idf_vectorizer.pkl",
                "rule_model": "rule_classifier.pkl", "type_model": "type_classifier.pkl"},
}
INSTALL = f"pip install --no-deps qa-metrics=={QA_METRICS_VERSION} && pip install nltk contractions"

Judge = Callable[[str, str, list[str]], float]  # (question, prediction, references) → 0/1


@dataclasses.dataclass
class AnswerJudges:
    judges: dict[str, Judge]
    status: str  # one line for the results table: what was computed, or why not

    def score(self, question: str, prediction: str, references: list[str]) -> dict[str, float]:
        return {name: judge(question, prediction, references) for name, judge in self.judges.items()}


def _import_qa_metrics():
    """The two classes; nltk's download attempts at import go to a buffer, not the terminal."""
    with contextlib.redirect_stderr(io.StringIO()), contextlib.redirect_stdout(io.StringIO()):
        from qa_metrics.cfm import CFMatcher
        from qa_metrics.pedant import PEDANT
    return {"cfm": CFMatcher, "pedants": PEDANT}


def _from_dir(cls, folder: Path, files: dict[str, str]):
    """An instance whose classifiers come from `folder` (the constructor would download them)."""
    import joblib

    missing = [name for name in files.values() if not (folder / name).is_file()]
    if missing:
        raise ConfigError(f"--qa-metrics-dir: {folder} lacks {', '.join(missing)}")
    judge = cls.__new__(cls)
    for attribute, name in files.items():
        setattr(judge, attribute, joblib.load(folder / name))
    return judge


def check_private(root: Path) -> None:
    """A ConfigError unless `root`, its cfm/, pedants/ and nltk_data/ folders and every .pkl (.pickle) file in them belong to the
    current user and are not writable by group or others: unpickling runs code from the files, so anyone
    who could write them could run code as you."""
    uid = os.getuid()
    folders = [root, *(root / name for name in FILES if (root / name).is_dir())]
    pickles = [f for folder in folders for f in sorted(folder.glob("*.pkl"))]
    nltk_dir = root / "nltk_data"
    if nltk_dir.is_dir():  # nltk loads some resources (old punkt) from .pickle files
        folders.append(nltk_dir)
        pickles += sorted(nltk_dir.rglob("*.pickle"))
    for path in [*folders, *pickles]:
        st = path.stat()
        if st.st_uid != uid:
            raise ConfigError(f"--qa-metrics-dir: {path} is owned by uid {st.st_uid}, not by you (uid {uid}); "
                              "its .pkl files would be unpickled, which runs code from them: refused")
        if st.st_mode & 0o022:
            raise ConfigError(f"--qa-metrics-dir: {path} is writable by group or others (mode "
                              f"{st.st_mode & 0o777:o}); its .pkl files would be unpickled, which runs code from "
                              f"them: refused (chmod go-w {path})")


def _downloaded(cls):
    """The package's own construction: downloads its classifiers (fails offline)."""
    with contextlib.redirect_stdout(io.StringIO()):
        return cls()


def _nltk_ready(nltk_dir: Path | None) -> bool:
    import nltk

    if nltk_dir is not None and str(nltk_dir) not in nltk.data.path:
        nltk.data.path.insert(0, str(nltk_dir))
    from qa_metrics.utils.tools import lemmatize_text

    try:
        lemmatize_text("answers were given")
    except LookupError:
        return False
    return True


def _judgment(instance, name: str) -> Judge:
    # One reference at a time: the package's list branches are fragile with several references.
    method = instance.cf_match if name == "cfm" else instance.evaluate
    return lambda q, pred, refs: float(any(bool(method(r, pred, q)) for r in refs if r.strip()))


OFFLINE = ("CFM/PEDANTS not computed: qa-metrics could not download its classifiers or nltk data (offline?); "
           "pass --qa-metrics-dir DIR holding cfm/, pedants/ and nltk_data/ copies")


def load_answer_judges(model_dir: str | None = None) -> AnswerJudges:
    """CFM and PEDANTS judges, or none with a one-line reason. A given `model_dir` that
    lacks a file is a ConfigError naming it; failed downloads are only reported."""
    try:
        classes = _import_qa_metrics()
    except ImportError:
        return AnswerJudges({}, f"CFM/PEDANTS not computed: qa-metrics is not installed ({INSTALL})")
    if model_dir is None:
        if not _nltk_ready(None):
            return AnswerJudges({}, OFFLINE)
        try:
            instances = {name: _downloaded(cls) for name, cls in classes.items()}
        except Exception:  # the package swallows download errors, then fails to load the files
            return AnswerJudges({}, OFFLINE)
        source = "downloaded classifiers"
    else:
        root = Path(model_dir)
        if not root.is_dir():
            raise ConfigError(f"--qa-metrics-dir {root}: not a directory")
        check_private(root)
        if not _nltk_ready(root / "nltk_data"):
            raise ConfigError(f"--qa-metrics-dir: {root / 'nltk_data'} lacks the nltk data qa-metrics lemmatises "
                              "with (wordnet, omw-1.4, averaged_perceptron_tagger_eng, punkt_tab)")
        instances = {name: _from_dir(cls, root / name, FILES[name]) for name, cls in classes.items()}
        source = f"classifiers from {root}"
    judges = {name: _judgment(instance, name) for name, instance in instances.items()}
    return AnswerJudges(judges, f"CFM and PEDANTS by qa-metrics {QA_METRICS_VERSION} ({source})")
