"""What AuRA does with a spoken question it gets wrong.

Each spoken-QA prediction (an `aura-jax eval --task sdqa` predictions.jsonl) gets one category, the
first that applies:

    correct      the answer contains a reference (the "contains" metric)
    transcribes  the answer is the question itself: within 50 % WER of the question, or of what the
                 student transcribes from the same clip (it wrote the question down, did not answer)
    misheard     the answer is what the base LLM answers to the student's own transcript of the clip:
                 it answered the question it heard, and heard it wrong
    prior        the answer is what the student says to the same prompt over silence: not from the audio
    wrong        another answer (a fact of the wrong entity or relation, or anything else)

So a wrong answer is separated into a hearing error (misheard), a task error (transcribes), and an
answer that does not depend on the audio (prior).
"""

from __future__ import annotations

import collections
import json
from pathlib import Path

import numpy as np

CATEGORIES = ("correct", "transcribes", "misheard", "prior", "wrong")


def _close(a: str, b: str, threshold: float = 0.5) -> bool:
    from aura_jax.evaluate.metrics import asr_scores

    try:
        return asr_scores([a], [b])["wer"] <= threshold
    except ValueError:  # an empty reference
        return False


def _same_answer(a: str, b: str) -> bool:
    from aura_jax.evaluate.metrics import normalize_answer

    return bool(normalize_answer(a)) and normalize_answer(a) == normalize_answer(b)


def categorize(prediction: str, question: str, references: list[str], heard: str, answer_to_heard: str,
               silence_answer: str) -> str:
    """One of CATEGORIES for one prediction (see the module docstring)."""
    from aura_jax.evaluate.metrics import contains

    if contains(prediction, references):
        return "correct"
    if _close(prediction, question) or (heard and _close(prediction, heard)):
        return "transcribes"
    if answer_to_heard and _same_answer(prediction, answer_to_heard):
        return "misheard"
    if _same_answer(prediction, silence_answer):
        return "prior"
    return "wrong"


def diagnose(run_dir: str | Path, sdqa_dir: str | Path, predictions: str | Path, out: str | Path,
             batch_size: int = 8, max_new_tokens: int = 24) -> dict:
    """Categorize every row of `predictions` (the student's spoken-QA answers); writes out/diagnosis.jsonl
    (a row each: question, answer, what it heard, the LLM's answer to that, category) and out/summary.json
    (counts and % per category, overall and per dialect). Needs the run (JAX) and the SD-QA data."""
    from types import SimpleNamespace

    from aura_jax.evaluate.datasets import read_sdqa
    from aura_jax.evaluate.harness import QA_INSTRUCTION, JaxSystem, aura_answers

    out = Path(out)
    if (out / "summary.json").exists():
        return json.loads((out / "summary.json").read_text())
    rows = [json.loads(line) for line in Path(predictions).read_text().splitlines() if line.strip()]
    gold = JaxSystem(str(run_dir), "gold", QA_INSTRUCTION, max_new_tokens)  # the base LLM reads a question
    config, model, tok = gold.config, gold.model, gold.tok
    items = {(it.id, it.dialect): it for it in read_sdqa(sdqa_dir)}
    waves = [items[(r["id"], r["dialect"])].audio.load() for r in rows]

    def batched(fn, xs):
        res = []
        for s in range(0, len(xs), batch_size):
            chunk = xs[s:s + batch_size]
            res += fn(chunk + [chunk[-1]] * (batch_size - len(chunk)))[:len(chunk)]
        return res

    heard = batched(lambda w: aura_answers(model, tok, config, config.prompt.asr_instruction, w, max_new_tokens),
                    waves)

    def answer_text(questions):  # as `eval --system gold` asks them
        return gold(None, [SimpleNamespace(question=q) for q in questions])

    answers_to_heard = batched(answer_text, heard)
    silence = aura_answers(model, tok, config, QA_INSTRUCTION, [np.zeros(16000, np.float32)] * batch_size,
                           max_new_tokens)[0]
    records = []
    for r, h, a in zip(rows, heard, answers_to_heard):
        cat = categorize(r["prediction"], r["question"], r["references"], h, a, silence)
        records.append({"id": r["id"], "dialect": r["dialect"], "question": r["question"],
                        "references": r["references"], "prediction": r["prediction"], "heard": h,
                        "llm_answer_to_heard": a, "category": cat})
    summary = summarize(records)
    summary["silence_answer"] = silence
    summary["hearing"] = hearing(records)
    out.mkdir(parents=True, exist_ok=True)
    (out / "diagnosis.jsonl").write_text("".join(json.dumps(x) + "\n" for x in records))
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary


def summarize(records: list[dict]) -> dict:
    """Counts and percentages per category, overall and per dialect."""
    def table(recs):
        counts = collections.Counter(r["category"] for r in recs)
        return {c: {"n": counts[c], "pct": 100 * counts[c] / len(recs) if recs else 0.0} for c in CATEGORIES}

    dialects = sorted({r["dialect"] for r in records})
    return {"n": len(records), "all": table(records),
            "by_dialect": {d: table([r for r in records if r["dialect"] == d]) for d in dialects},
            "examples": {c: [r for r in records if r["category"] == c][:3] for c in CATEGORIES}}


def hearing(records: list[dict]) -> dict:
    """Hearing apart from answering: the student's WER on the spoken questions (its own transcripts), how
    many it transcribes exactly, how many of those it answers correctly from the audio, and how many the
    base LLM answers correctly from its transcripts (all, and the exactly heard ones)."""
    from aura_jax.evaluate.metrics import asr_scores, contains

    exact = [r for r in records if r["heard"].strip() == r["question"].strip()]
    llm_right = lambda rs: sum(contains(r["llm_answer_to_heard"], r["references"]) > 0 for r in rs)
    return {"question_wer": 100 * asr_scores([r["heard"] for r in records], [r["question"] for r in records])["wer"],
            "heard_exactly": len(exact),
            "heard_exactly_answered_correctly": sum(r["category"] == "correct" for r in exact),
            "llm_answers_its_exact_transcripts_correctly": llm_right(exact),
            "llm_answers_its_transcripts_correctly": llm_right(records)}
