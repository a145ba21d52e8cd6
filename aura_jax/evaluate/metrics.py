"""Answer and transcript metrics.

QA: exact match, SQuAD token F1 and "reference contained in the answer", all
after SQuAD answer normalisation, maximised over the reference answers.
ASR: WER / CER with jiwer after Whisper's English text normaliser.
"""

from __future__ import annotations

import collections
import re
import string

_ARTICLES = re.compile(r"\b(a|an|the)\b", re.UNICODE)
_PUNCTUATION = set(string.punctuation)


def normalize_answer(text: str) -> str:
    """SQuAD v1.1 normalisation: lower case, drop punctuation and articles, squeeze spaces."""
    text = "".join(ch for ch in text.lower() if ch not in _PUNCTUATION)
    return " ".join(_ARTICLES.sub(" ", text).split())


def exact_match(prediction: str, references: list[str]) -> float:
    return float(any(normalize_answer(prediction) == normalize_answer(r) for r in references))


def _f1(prediction: str, reference: str) -> float:
    pred, ref = normalize_answer(prediction).split(), normalize_answer(reference).split()
    common = collections.Counter(pred) & collections.Counter(ref)
    overlap = sum(common.values())
    if not pred or not ref:
        return float(pred == ref)
    if overlap == 0:
        return 0.0
    precision, recall = overlap / len(pred), overlap / len(ref)
    return 2 * precision * recall / (precision + recall)


def token_f1(prediction: str, references: list[str]) -> float:
    return max((_f1(prediction, r) for r in references), default=0.0)


def contains(prediction: str, references: list[str]) -> float:
    """1 if some normalised reference appears (as whole words) in the normalised prediction."""
    pred = f" {normalize_answer(prediction)} "
    return float(any(normalize_answer(r) and f" {normalize_answer(r)} " in pred for r in references))


def qa_scores(prediction: str, references: list[str]) -> dict[str, float]:
    return {"exact_match": exact_match(prediction, references), "f1": token_f1(prediction, references),
            "contains": contains(prediction, references)}


def _whisper_normalizer():
    from whisper_normalizer.english import EnglishTextNormalizer

    return EnglishTextNormalizer()


def asr_scores(predictions: list[str], references: list[str]) -> dict[str, float]:
    """Corpus WER and CER (jiwer) after Whisper's English normaliser; empty references are dropped."""
    import jiwer

    norm = _whisper_normalizer()
    pairs = [(norm(p), norm(r)) for p, r in zip(predictions, references) if norm(r).strip()]
    if not pairs:
        raise ValueError("no non-empty reference transcripts to score")
    preds, refs = [p for p, _ in pairs], [r for _, r in pairs]
    return {"wer": jiwer.wer(refs, preds), "cer": jiwer.cer(refs, preds), "scored": len(pairs)}
