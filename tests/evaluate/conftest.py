"""A local copy of qa-metrics' model files, made here: the real ones are downloads.

The classifiers are fitted with scikit-learn on a handful of judged answers, on
the very features the package computes (we build them with the package's own
code), so loading and scoring run through qa-metrics unchanged. The one piece
replaced is nltk's lemmatiser, whose data is a download too: `lemmatize_text`
becomes the identity.
"""

import joblib
import numpy as np
import pytest
from scipy.sparse import hstack

# (question, reference, candidate, judged correct?) — none of the correct ones contains its reference.
JUDGED = [
    ("how many legs has a spider", "eight", "8 legs", True),
    ("how many legs has a spider", "eight", "six", False),
    ("what is the capital of france", "paris", "the french capital city", True),
    ("what is the capital of france", "paris", "london", False),
    ("who wrote hamlet", "shakespeare", "the bard of avon", True),
    ("who wrote hamlet", "shakespeare", "dickens", False),
]


@pytest.fixture
def judged_answers():
    return JUDGED


@pytest.fixture
def identity_lemmatizer(monkeypatch):
    import qa_metrics.f1
    import qa_metrics.pedant
    import qa_metrics.utils.tools

    for module in (qa_metrics.f1, qa_metrics.pedant, qa_metrics.utils.tools):
        monkeypatch.setattr(module, "lemmatize_text", lambda text: text)


def _fit_cfm(folder):
    from qa_metrics.f1 import f1_score_with_precision_recall
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    texts = [f"[CLS] {c} [SEP] {r} [SEP] {q} [SEP]" for q, r, c, _ in JUDGED]
    tokenizer = TfidfVectorizer().fit(texts)
    f1 = [f1_score_with_precision_recall(r, c) for _, r, c, _ in JUDGED]
    extra = np.array([[s["f1"], s["precision"], s["recall"]] for s in f1])
    features = hstack([tokenizer.transform(texts), extra])
    model = LogisticRegression(C=100.0).fit(features, ["correct" if ok else "incorrect" for *_, ok in JUDGED])
    folder.mkdir(parents=True)
    joblib.dump(model, folder / "lr_classifier.pkl")
    joblib.dump(tokenizer, folder / "tf-idf_vectorizer.pkl")


def _fit_pedants(folder):
    from qa_metrics.pedant import PEDANT
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    data = [{"question": q, "reference": r, "candidate": c} for q, r, c, _ in JUDGED]
    labels = ["correct" if ok else "incorrect" for *_, ok in JUDGED]
    judge = PEDANT.__new__(PEDANT)
    judge.tokenizer = TfidfVectorizer().fit([f"[CLS] {d['question']} [SEP] {d['reference']} [SEP] {d['candidate']} [SEP]"
                                             for d in data])
    f1, p, r = judge.get_f1_features(data)
    texts = judge.tokenizer.transform([f"[CLS] {d['question']} [SEP] {d['reference']} [SEP] {d['candidate']} [SEP]"
                                       for d in data])
    judge.rule_model = LogisticRegression().fit(hstack([texts, f1, p, r]), [1, 2] * 3)
    type_texts = judge.tokenizer.transform([f"[CLS] {d['question']} [SEP] {d['reference']} [SEP]" for d in data])
    judge.type_model = LogisticRegression().fit(type_texts, ["number", "number", "place", "place", "person", "person"])
    judge.model = LogisticRegression(C=100.0).fit(judge.construct_features(data), labels)
    folder.mkdir(parents=True)
    for attribute, name in (("model", "lr_classifier.pkl"), ("tokenizer", "tf-idf_vectorizer.pkl"),
                            ("rule_model", "rule_classifier.pkl"), ("type_model", "type_classifier.pkl")):
        joblib.dump(getattr(judge, attribute), folder / name)


@pytest.fixture
def qa_metrics_dir(tmp_path, identity_lemmatizer):
    """DIR/cfm, DIR/pedants and an (empty: lemmatiser replaced) DIR/nltk_data."""
    root = tmp_path / "qa_metrics_files"
    _fit_cfm(root / "cfm")
    _fit_pedants(root / "pedants")
    (root / "nltk_data").mkdir()
    # Private to the user whatever the umask: eval refuses .pkl files others could have written.
    for path in (root, root / "cfm", root / "pedants", root / "nltk_data"):
        path.chmod(0o755)
    for pkl in root.rglob("*.pkl"):
        pkl.chmod(0o644)
    return root
