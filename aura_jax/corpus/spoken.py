"""The real-model demo's corpus: templated English spoken by three speech engines, with voices and one
whole engine held out, and spoken test questions the LLM answers right from the text.

    OUT/asr_train/{validated.tsv, clips/}   TRAIN_VOICES (espeak-ng and flite), augmented (corpus/augment.py)
    OUT/asr_test_<group>/                   other sentences, clean, one set per voice group (`accent` = voice)
    OUT/text_qa.jsonl                       the LLM's own answers as targets: to questions it answers right, and
                                            to a few hundred open everyday questions (breadth)
    OUT/sdqa/dev.parquet                    gold-filtered test questions, one audio column per EVAL_VOICES
    OUT/corpus.json                         summary; the cache stamp (same parameters → no work)
    OUT/spoken_qa_train/                    `make_spoken_questions`: text_qa's questions spoken by training
                                            voices, each with the LLM's own answer (an `answer` column)

Voice groups: `trained` voices speak the training sentences; `heldout_voices` are voices of the same
two engines never trained on; `heldout_engine` is festival, whose voices and synthesis are never heard
in training. flite's slt and kal are the speakers of festival's two voices, so both are kept out of
training too: the held-out engine's speakers are unheard as well.
"""

from __future__ import annotations

import hashlib
import json
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from aura_jax.corpus import sentences as text
from aura_jax.corpus import voices
from aura_jax.corpus.augment import Augment, augment
from aura_jax.corpus.common import atomic_dir
from aura_jax.corpus.make import TSV_COLUMNS, _wav_bytes, voice_column

VERSION = 4  # 2: plural nouns ("sheep", "mice", not "sheeps"); 3: every test word heard (issue 33);
# 4: hundreds of speakers from four engines (corpus/voices.py), client_id = speaker id (issue 42)
TRAIN_SPEAKERS = voices.inventory()
TRAIN_VOICES = tuple((s.engine, s.voice) for s in TRAIN_SPEAKERS)  # (engine, voice) per speaker
GROUPS = voices.GROUPS
ESPEAK_SPEED, ESPEAK_PITCH = (140, 185), (35, 65)
# heldout_neural speaks heldout_voices' sentences: the same text by an unheard neural voice, and no new
# test words to cover
SAME_SENTENCES = {"heldout_neural": "heldout_voices"}
MIN_ENGINES = 2  # every test word is heard from at least this many engines
SPOKEN_QA_DIR = "spoken_qa_train"  # make_spoken_questions


def column(engine: str, voice: str) -> str:
    """The SD-QA audio column of a voice: ("flite", "kal16") → "flite_kal16"."""
    return voice_column(f"{engine}-{voice}")


def group_of(col: str) -> str:
    return next(g for g, voices in GROUPS.items() if col in {column(*v) for v in voices})


def _speak(speaker: voices.Speaker, sentence: str, rng) -> np.ndarray:
    from aura_jax.synth import speak, speak_with

    p = speaker.param
    if speaker.engine == "espeak-ng":  # a tempo per clip, a pitch within the speaker's band
        pitch = voices.ESPEAK_PITCH_BANDS[p["pitch"]] if "pitch" in p else ESPEAK_PITCH
        return speak(sentence, voice=speaker.voice, speed=int(rng.integers(*ESPEAK_SPEED)),
                     pitch=int(rng.integers(*pitch)))
    if speaker.engine == "piper":
        from aura_jax.corpus import engines
        return engines.piper(sentence, noise=p.get("noise", 0.667), length=p.get("length", 1.0))
    if speaker.engine == "kokoro":
        from aura_jax.corpus import engines
        return engines.kokoro(sentence, speaker.styles)
    return speak_with(speaker.engine, speaker.voice, sentence)


def _clip(job) -> tuple[bytes, dict]:
    speaker, sentence, seed, spec = job
    rng = np.random.default_rng(seed)
    wave, done = augment(_speak(speaker, sentence, rng), spec, rng)
    return _wav_bytes(wave), done


def _write_asr(root: Path, rows: list[tuple[str, voices.Speaker, str]], seed: int, spec: Augment, workers: int,
               name: str | None = None, extra: dict[str, list[str]] | None = None) -> list[dict]:
    """rows: (group, speaker, sentence) → CommonVoice layout (client_id: the speaker's id, accent: its voice); returns each clip's augmentation.
    Clips are called {name}_{i}.wav (name: the directory's); `extra` adds TSV columns (name → one value
    per row; tabs and newlines become spaces)."""
    extra = extra or {}
    name = name or root.name
    from tqdm import tqdm

    (root / "clips").mkdir(parents=True)
    jobs = [(sp, s, [seed, i], spec) for i, (_, sp, s) in enumerate(rows)]
    with ThreadPoolExecutor(workers) as pool:
        clips = list(tqdm(pool.map(_clip, jobs), total=len(jobs), desc=name, leave=False, disable=len(jobs) < 50))
    with open(root / "validated.tsv", "w", encoding="utf-8", newline="") as f:
        f.write("\t".join((*TSV_COLUMNS, *extra)) + "\n")
        for i, ((group, sp, s), (data, _)) in enumerate(zip(rows, clips)):
            clip = f"{name}_{i:06d}.wav"
            (root / "clips" / clip).write_bytes(data)
            more = [str(values[i]).replace("\t", " ").replace("\n", " ") for values in extra.values()]
            f.write("\t".join((sp.id, clip, s, "2", "0", "", "", column(sp.engine, sp.voice), "en", *more)) + "\n")
    return [done for _, done in clips]


def _write_sdqa(path: Path, questions: list[tuple[str, list[str], str]], seed: int, workers: int,
                groups: dict = GROUPS) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    tested = [v for group in groups.values() for v in group]
    jobs = [(voices.Speaker(e, v), q, [seed, 9, i, j], Augment.none()) for i, (q, _, _) in enumerate(questions)
            for j, (e, v) in enumerate(tested)]
    with ThreadPoolExecutor(workers) as pool:
        wavs = iter([data for data, _ in pool.map(_clip, jobs)])
    cells: dict = {column(*v): [] for v in tested}
    for i in range(len(questions)):
        for v in tested:
            cells[column(*v)].append({"bytes": next(wavs), "path": f"q{i:04d}_{column(*v)}.wav"})
    audio = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
    table = pa.table({"id": [f"q{i:04d}" for i in range(len(questions))], "question": [q for q, _, _ in questions],
                      "answers": [a for _, a, _ in questions], "kind": [k for _, _, k in questions],
                      **{k: pa.array(v, audio) for k, v in cells.items()}})
    path.parent.mkdir(parents=True)
    pq.write_table(table, path)


def _llm_answers_batched(llm_dir: str, questions: list[str], system: str, instruction: str, max_new_tokens: int,
                         batch: int = 16) -> list[tuple[str, bool]]:
    """(answer, finished) per question, greedy, left-padded batches (about 10× faster than one at a time
    on 2 cores; padding may move a near-tie token, so the gold filter stays unbatched, as eval's gold is).
    finished: the answer ended before `max_new_tokens`."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(llm_dir)
    tok.padding_side = "left"
    model = AutoModelForCausalLM.from_pretrained(llm_dir, dtype=torch.float32).eval()
    out = []
    for i in range(0, len(questions), batch):
        texts = [tok.apply_chat_template([{"role": "system", "content": system},
                                          {"role": "user", "content": f"{q}\n{instruction}"}],
                                         add_generation_prompt=True, tokenize=False) for q in questions[i:i + batch]]
        ids = tok(texts, return_tensors="pt", padding=True, add_special_tokens=False)
        with torch.no_grad():
            gen = model.generate(**ids, max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=tok.pad_token_id)
        for row in gen[:, ids["input_ids"].shape[1]:]:
            ended = bool((row == tok.eos_token_id).any())
            out.append((tok.decode(row, skip_special_tokens=True).strip(), ended))
    return out


def _llm_answers(llm_dir: str, questions: list[str], system: str, instruction: str, max_new_tokens: int) -> list[str]:
    """The LLM's greedy answers to text questions (PyTorch, transformers), prompted as eval's gold is."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(llm_dir)
    model = AutoModelForCausalLM.from_pretrained(llm_dir, dtype=torch.float32).eval()
    out = []
    for q in questions:
        ids = tok.apply_chat_template([{"role": "system", "content": system},
                                       {"role": "user", "content": f"{q}\n{instruction}"}], add_generation_prompt=True,
                                      return_tensors="pt", return_dict=True)
        with torch.no_grad():
            gen = model.generate(**ids, max_new_tokens=max_new_tokens, do_sample=False)
        out.append(tok.decode(gen[0, ids["input_ids"].shape[1]:], skip_special_tokens=True).strip())
    return out


def make_spoken_corpus(out_dir, llm_dir: str, *, num_train_sentences: int = 2400, num_test_sentences: int = 30,
                       max_questions: int | None = None, min_heard: int = 20, min_voices: int = 4,
                       max_text_qa: int | None = None, max_open_qa: int | None = None, seed: int = 0,
                       spec: Augment = Augment(), instruction: str = "Give a simple one sentence answer.",
                       system: str = "You are a helpful assistant.", workers: int = 2,
                       engines: tuple[str, ...] = voices.ENGINES, log=print) -> dict:
    """Write the corpus (module docstring); returns its summary (also corpus.json). Cached by parameters;
    written to a temporary sibling and renamed, so a crash leaves no half-written corpus.

    Closed vocabulary, open sentences: every word of every test question and test sentence is spoken in
    training at least `min_heard` times by at least `min_voices` training voices, in sentences that are
    neither (`sentences.select_covering`); a word that cannot be is one error naming it, before any audio."""
    from aura_jax.evaluate.metrics import contains
    from aura_jax.synth import espeak_available

    out = Path(out_dir)
    params = {"version": VERSION, "seed": int(seed), "llm": str(llm_dir), "num_train_sentences": num_train_sentences,
              "num_test_sentences": num_test_sentences, "max_questions": max_questions, "max_text_qa": max_text_qa,
              "max_open_qa": max_open_qa, "min_heard": min_heard, "min_voices": min_voices,
              "augment": [list(x) if isinstance(x, tuple) else x for x in vars(spec).values()],
              "instruction": instruction, "system": system, "engines": list(engines)}
    stamp = out / "corpus.json"
    if stamp.exists() and json.loads(stamp.read_text()).get("params") == params:
        return json.loads(stamp.read_text())
    if not espeak_available():
        raise RuntimeError("the real-model corpus needs espeak-ng, flite and festival: bash scripts/setup_env.sh "
                           "(apt-get install espeak-ng flite festival festvox-us-slt-hts festvox-kallpc16k)")
    start = time.perf_counter()
    TRAIN_SPEAKERS = voices.inventory(tuple(engines))  # noqa: N806 (the module's, or fewer engines)
    GROUPS = {g: vs for g, vs in voices.GROUPS.items() if all(e in engines or e == "festival" for e, _ in vs)}  # noqa
    asked = [q for q, _, _ in text.TEST_QUESTIONS]
    text_groups = [g for g in GROUPS if g not in SAME_SENTENCES]  # the neural group reads heldout_voices' text
    test_pool = text.sentences(seed, num_test_sentences * len(text_groups), exclude=asked)
    targets = text.test_words(test_pool)
    train = text.select_covering(text.candidates(seed, 200, exclude=asked + test_pool), targets, num_train_sentences,
                                 len(TRAIN_SPEAKERS), min_heard=min_heard, min_voices=min_voices,
                                 engine_of=[s.engine for s in TRAIN_SPEAKERS],
                                 min_engines=min(MIN_ENGINES, min_voices))  # no voices asked: no engines
    train_rows = [("trained", TRAIN_SPEAKERS[v], s) for s, v in train]
    heard = text.coverage([(s, v) for s, v in train], targets)
    engines_heard = text.coverage([(s, TRAIN_SPEAKERS[v].engine) for s, v in train], targets)
    questions = text.TEST_QUESTIONS[:max_questions] if max_questions else text.TEST_QUESTIONS
    log(f"gold filter: the LLM reads {len(questions)} test questions")
    gold = _llm_answers(llm_dir, [q for q, _, _ in questions], system, instruction, 32)
    kept = [q for q, g in zip(questions, gold) if contains(g, q[1])]
    candidates = text.text_qa_candidates()[:max_text_qa]
    opened = text.open_questions()[:max_open_qa]
    log(f"text QA: the LLM answers {len(candidates)} training questions and {len(opened)} open ones")
    answers = _llm_answers_batched(llm_dir, [q for q, _ in candidates] + opened, system, instruction, 48)
    # Reference questions: kept where the LLM is right; open ones: kept where it finished its answer.
    text_qa = [(q, a) for (q, refs), (a, ended) in zip(candidates, answers) if ended and contains(a, refs)]
    text_qa += [(q, a) for q, (a, ended) in zip(opened, answers[len(candidates):]) if ended and a]
    test_rows = []
    for group, vs in GROUPS.items():
        g = text_groups.index(SAME_SENTENCES.get(group, group))
        chunk = test_pool[g * num_test_sentences:(g + 1) * num_test_sentences]
        test_rows += [(group, voices.Speaker(*vs[i % len(vs)]), s) for i, s in enumerate(chunk)]
    with atomic_dir(out) as tmp:
        log(f"speech: {len(train_rows)} training clips, {len(test_rows)} test clips, {len(kept)} questions × "
            f"{sum(map(len, GROUPS.values()))} voices; {len(TRAIN_SPEAKERS)} training speakers "
            f"{voices.summary(TRAIN_SPEAKERS)['per_engine']}")
        done = _write_asr(tmp / "asr_train", train_rows, seed, spec, workers)
        for group in GROUPS:  # one set per group: eval scores each, the learning curves read their first clips
            _write_asr(tmp / f"asr_test_{group}", [r for r in test_rows if r[0] == group], seed + 1,
                       Augment.none(), workers)
        with open(tmp / "text_qa.jsonl", "w", encoding="utf-8") as f:
            for q, a in text_qa:
                f.write(json.dumps({"question": f"{q}\n{instruction}", "answer": a}) + "\n")
        _write_sdqa(tmp / "sdqa" / "dev.parquet", kept, seed, workers, GROUPS)
        used = sorted({v for _, v in train})
        summary = {"params": params, "train_voices": [TRAIN_SPEAKERS[v].id for v in used],
                   "speakers": {**voices.summary([TRAIN_SPEAKERS[v] for v in used]),
                                "clips_per_engine": _per_engine(train_rows)},
                   "groups": {g: [column(*v) for v in vs] for g, vs in GROUPS.items()},
                   "gold": [{"question": q, "answers": a, "kind": k, "gold": g, "kept": (q, a, k) in kept}
                            for (q, a, k), g in zip(questions, gold)],
                   "counts": {"asr_train": len(train_rows), "asr_test": len(test_rows), "text_qa": len(text_qa),
                              "text_qa_candidates": len(candidates) + len(opened), "test_questions": len(questions),
                              "sdqa_questions": len(kept), "sdqa_items": len(kept) * sum(map(len, GROUPS.values()))},
                   "augmented": {k: sum(k in d for d in done) for k in ("speed", "band", "snr_db")},
                   "coverage": {**coverage_summary(heard, [q for q, _, _ in questions], test_pool, min_heard,
                                                   min_voices),
                                "min_engines": MIN_ENGINES, "fewest_engines": min((e for _, e in engines_heard.values()),
                                                                                default=None)},
                   "seconds": round(time.perf_counter() - start, 1)}
        (tmp / "corpus.json").write_text(json.dumps(summary, indent=2))
    return summary


def _per_engine(rows) -> dict[str, int]:
    out: dict[str, int] = {}
    for _, sp, _ in rows:
        out[sp.engine] = out.get(sp.engine, 0) + 1
    return out


def coverage_summary(heard: dict[str, tuple[int, int]], questions: list[str], test_sentences: list[str],
                     min_heard: int, min_voices: int) -> dict:
    """What the report's coverage table shows: per test question its rarest word in training, that word's
    count and the fewest training voices of any of its words; totals over every test word."""
    def rarest(sentence: str) -> dict:
        ws = text.words(sentence)
        w = min(ws, key=lambda w: (heard[w][0], w))
        return {"rarest": w, "heard": heard[w][0], "voices": min(heard[x][1] for x in ws)}

    return {"min_heard": min_heard, "min_voices": min_voices, "test_words": len(heard),
            "words_meeting": sum(n >= min_heard and v >= min_voices for n, v in heard.values()),
            "questions": {q: rarest(q) for q in questions},
            "test_sentences_min_heard": min((rarest(s)["heard"] for s in test_sentences), default=None)}


def make_spoken_questions(corpus_dir, *, voices_per_question: int = 3, seed: int = 0, spec: Augment = Augment(),
                          workers: int = 2, log=print) -> dict:
    """CORPUS/spoken_qa_train/ (CommonVoice layout plus an `answer` column): every text-QA training
    question of CORPUS/text_qa.jsonl spoken by `voices_per_question` training voices (augmented, as the
    ASR clips are), its target the LLM's own answer to the question read as text.

    Why: with ASR rows alone the student is never asked anything about audio, and given a spoken test
    question it transcribes it (issue 33's long run). These rows ask the eval's question ("<audio> Give
    a simple one sentence answer.") about spoken questions, none of them a test question (text_qa's are
    disjoint from TEST_QUESTIONS), so answering from audio is trained at all. Use it as a speech source
    with `answer_column: answer` and `instruction:` the QA instruction. Cached by parameters."""
    root, out = Path(corpus_dir), Path(corpus_dir) / SPOKEN_QA_DIR
    source = root / "text_qa.jsonl"
    if not source.is_file():
        raise FileNotFoundError(f"{source}: build the corpus first (make_spoken_corpus)")
    params = {"version": 2, "seed": int(seed), "voices_per_question": voices_per_question,
              "text_qa_sha256": hashlib.sha256(source.read_bytes()).hexdigest(),
              "augment": [list(x) if isinstance(x, tuple) else x for x in vars(spec).values()]}
    stamp = out / "spoken_qa.json"
    if stamp.exists() and json.loads(stamp.read_text()).get("params") == params:
        return json.loads(stamp.read_text())
    start = time.perf_counter()
    pairs = []
    for line in source.read_text(encoding="utf-8").splitlines():
        if line.strip():
            record = json.loads(line)
            pairs.append((record["question"].split("\n")[0].strip(), record["answer"]))
    asked = {q.lower() for q, _, _ in text.TEST_QUESTIONS}
    if any(q.lower() in asked for q, _ in pairs):
        raise ValueError(f"{source}: holds a test question; spoken training questions must not")
    stamp_in = root / "corpus.json"
    built = json.loads(stamp_in.read_text()).get("params", {}) if stamp_in.is_file() else {}
    TRAIN_SPEAKERS = voices.inventory(tuple(built.get("engines", voices.ENGINES)))  # noqa: N806: the corpus's
    rng = np.random.default_rng([seed, 7])
    rows, answers = [], []
    for q, a in pairs:
        for v in rng.choice(len(TRAIN_SPEAKERS), size=min(voices_per_question, len(TRAIN_SPEAKERS)), replace=False):
            rows.append(("trained", TRAIN_SPEAKERS[int(v)], q))
            answers.append(a)
    log(f"spoken questions: {len(pairs)} × {voices_per_question} training voices = {len(rows)} clips")
    with atomic_dir(out) as tmp:
        _write_asr(tmp, rows, seed + 2, spec, workers, name=out.name, extra={"answer": answers})
        summary = {"params": params, "questions": len(pairs), "clips": len(rows),
                   "seconds": round(time.perf_counter() - start, 1)}
        (tmp / "spoken_qa.json").write_text(json.dumps(summary, indent=2))
    return summary
