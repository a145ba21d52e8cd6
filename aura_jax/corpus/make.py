"""Write the synthesized miniature corpus: ASR train/test sets in the CommonVoice layout,
text QA JSONL, a spoken QA test set in the SD-QA parquet layout and LM pretraining text.

    OUT/asr_train/{validated.tsv, clips/*.wav}   grammar sentences, TRAIN voices
    OUT/asr_test/{validated.tsv, clips/*.wav}    other sentences, HELD-OUT voices only
    OUT/text_qa.jsonl                            {"question", "answer"} (fact table, test questions excluded)
    OUT/sdqa/dev.parquet                         id, question, answers, one audio column per held-out voice
    OUT/lm_text.txt                              fact sentences, grammar sentences, every QA pair as text
    OUT/corpus.json                              summary; the cache stamp (same parameters → no work)

Voices are espeak-ng voices; each clip gets a speed and pitch drawn from the seed.
The held-out voices (as SD-QA tests unseen dialects) never speak in asr_train.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import soundfile as sf

from aura_jax.corpus import grammar

VERSION = 1
TRAIN_VOICES = ("en-us", "en-gb", "en-gb-x-rp", "en-029", "en-us-nyc", "en-us+f3", "en-gb+f4", "en+m3")
HELDOUT_VOICES = ("en-gb-scotland", "en-gb-x-gbclan", "en-gb-x-gbcwmd")
SPEED_RANGE = (130, 190)  # espeak words per minute
PITCH_RANGE = (30, 70)
TSV_COLUMNS = ("client_id", "path", "sentence", "up_votes", "down_votes", "age", "gender", "accent", "locale")


def voice_column(voice: str) -> str:
    """A safe identifier for a voice (the SD-QA audio column name): "en-gb-scotland" → "en_gb_scotland"."""
    return "".join(c if c.isalnum() else "_" for c in voice.lower())


def _check_espeak(voices) -> None:
    from aura_jax import synth

    if not synth.espeak_available():
        raise RuntimeError("make_corpus needs espeak-ng to synthesize speech: apt-get install espeak-ng")
    for v in voices:
        synth.speak("one", voice=v)  # raises naming the voice if espeak-ng does not know it


def _prosody(seed: int, split: str, index: int) -> tuple[int, int]:
    rng = np.random.default_rng([seed, sum(map(ord, split)), index])
    return int(rng.integers(*SPEED_RANGE)), int(rng.integers(*PITCH_RANGE))


def _wav_bytes(wave: np.ndarray) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, wave, 16000, format="WAV", subtype="PCM_16")
    return buf.getvalue()


def _synthesize(jobs: list[tuple[str, str, int, int]], workers: int, desc: str) -> list[bytes]:
    """WAV bytes (16 kHz mono PCM16) for (text, voice, speed, pitch) jobs, in order."""
    from tqdm import tqdm

    from aura_jax.synth import speak

    def one(job):
        text, voice, speed, pitch = job
        return _wav_bytes(speak(text, voice=voice, speed=speed, pitch=pitch))

    with ThreadPoolExecutor(max(1, workers)) as pool:
        return list(tqdm(pool.map(one, jobs), total=len(jobs), desc=desc, leave=False,
                         disable=len(jobs) < 50))


def _write_asr(root: Path, prefix: str, texts: list[str], voices, seed: int, workers: int) -> dict:
    clips = root / "clips"
    clips.mkdir(parents=True)
    jobs, rows = [], []
    for i, text in enumerate(texts):
        voice = voices[i % len(voices)]
        speed, pitch = _prosody(seed, prefix, i)
        name = f"{prefix}_{i:06d}.wav"
        jobs.append((text, voice, speed, pitch))
        rows.append((voice_column(voice), name, text, "2", "0", "", "", voice, "en"))
    for (_, name, *_), data in zip(rows, _synthesize(jobs, workers, prefix)):
        (clips / name).write_bytes(data)
    with open(root / "validated.tsv", "w", encoding="utf-8", newline="") as f:
        f.write("\t".join(TSV_COLUMNS) + "\n")
        for row in rows:
            f.write("\t".join(row) + "\n")
    return {"clips": len(rows), "voices": sorted({voices[i % len(voices)] for i in range(len(texts))})}


def _write_sdqa(path: Path, test_qa: list[tuple[str, str]], voices, seed: int, workers: int) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    audio_type = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
    jobs = []
    for i, (question, _) in enumerate(test_qa):
        for v in voices:
            speed, pitch = _prosody(seed, f"sdqa-{v}", i)
            jobs.append((question, v, speed, pitch))
    wavs = iter(_synthesize(jobs, workers, "sdqa"))
    columns: dict = {"id": [f"q{i:04d}" for i in range(len(test_qa))],
                     "question": [q for q, _ in test_qa], "answers": [[a] for _, a in test_qa]}
    cells = {voice_column(v): [] for v in voices}
    for i in range(len(test_qa)):
        for v in voices:
            cells[voice_column(v)].append({"bytes": next(wavs), "path": f"q{i:04d}_{voice_column(v)}.wav"})
    table = pa.table({**columns, **{k: pa.array(v, audio_type) for k, v in cells.items()}})
    path.parent.mkdir(parents=True)
    pq.write_table(table, path)


def lm_text_lines(train_sentences: list[str], train_qa, test_qa) -> list[str]:
    """LM pretraining text: every fact stated, the ASR training sentences, every QA pair as text
    ("question answer" lines; the chat-template rendering is done by pretrain_lm with the
    LLM's own template)."""
    lines = list(grammar.fact_sentences())
    lines += train_sentences
    lines += [f"question {q} answer {a}" for q, a in list(train_qa) + list(test_qa)]
    return lines


def make_corpus(out_dir, *, num_train_sentences: int = 2000, num_test_sentences: int = 200, num_qa: int = 80,
                seed: int = 0, voices=TRAIN_VOICES, heldout_voices=HELDOUT_VOICES, workers: int = 2) -> dict:
    """Write the corpus to `out_dir` (see the module docstring); returns the summary (also corpus.json).

    A second call with the same parameters returns the existing summary at once. Written to a
    temporary sibling and renamed, so a crash leaves no half-written corpus."""
    out = Path(out_dir)
    voices, heldout_voices = list(voices), list(heldout_voices)
    params = {"version": VERSION, "seed": int(seed), "num_train_sentences": int(num_train_sentences),
              "num_test_sentences": int(num_test_sentences), "num_qa": int(num_qa), "voices": voices,
              "heldout_voices": heldout_voices}
    stamp = out / "corpus.json"
    if stamp.exists():
        summary = json.loads(stamp.read_text())
        if summary.get("params") == params:
            return summary
    if set(voices) & set(heldout_voices):
        raise ValueError(f"voices and heldout_voices overlap: {sorted(set(voices) & set(heldout_voices))}")
    if not voices or not heldout_voices:
        raise ValueError("make_corpus needs at least one training voice and one held-out voice")
    _check_espeak(voices + heldout_voices)
    start = time.perf_counter()

    train_qa, test_qa = grammar.split_questions(seed, num_qa)
    test_questions = {q for q, _ in test_qa}
    # ASR sentences never include the spoken test questions; test sentences differ from train ones.
    pool = grammar.sentences(seed, num_train_sentences + num_test_sentences, exclude=test_questions)
    train_sentences, test_sentences = pool[:num_train_sentences], pool[num_train_sentences:]

    for stale in out.parent.glob(f".{out.name}.tmp-*"):  # left by a killed run
        shutil.rmtree(stale, ignore_errors=True)
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
    tmp.mkdir(parents=True)
    try:
        asr_train = _write_asr(tmp / "asr_train", "train", train_sentences, voices, seed, workers)
        asr_test = _write_asr(tmp / "asr_test", "test", test_sentences, heldout_voices, seed, workers)
        with open(tmp / "text_qa.jsonl", "w", encoding="utf-8") as f:
            for q, a in train_qa:
                f.write(json.dumps({"question": q, "answer": a}) + "\n")
        _write_sdqa(tmp / "sdqa" / "dev.parquet", test_qa, heldout_voices, seed, workers)
        lines = lm_text_lines(train_sentences, train_qa, test_qa)
        (tmp / "lm_text.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
        summary = {
            "params": params, "version": VERSION, "seed": int(seed), "voices": voices,
            "heldout_voices": heldout_voices, "sdqa_dialects": [voice_column(v) for v in heldout_voices],
            "counts": {"asr_train": asr_train["clips"], "asr_test": asr_test["clips"], "text_qa": len(train_qa),
                       "sdqa_questions": len(test_qa), "sdqa_items": len(test_qa) * len(heldout_voices),
                       "lm_text_lines": len(lines)},
            "paths": {"asr_train": "asr_train", "asr_test": "asr_test", "text_qa": "text_qa.jsonl",
                      "sdqa": "sdqa/dev.parquet", "lm_text": "lm_text.txt"},
            "vocabulary_size": len(grammar.vocabulary()),
            "root": str(out), "seconds": round(time.perf_counter() - start, 2),
        }
        (tmp / "corpus.json").write_text(json.dumps(summary, indent=2))
        if out.exists():
            shutil.rmtree(out)
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return summary
