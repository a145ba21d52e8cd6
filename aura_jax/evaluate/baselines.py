"""`aura-jax baselines`: the yardstick for AuRA on the real models, before any AuRA training.

Spoken questions that the LLM answers correctly from the text (the gold filter), spoken by three
engines in several voices; for each voice: Whisper's WER on the questions, the cascade's spoken-QA
accuracy (Whisper transcribes, the LLM answers), and the time per answer of both systems on this
machine. Both systems are the PyTorch ones of `aura_jax.torch.systems` (transformers, greedy).
An answer is right when it contains one of the reference answers as whole words (`contains`)."""

from __future__ import annotations

import json
import statistics
import time
from pathlib import Path

from aura_jax.evaluate.metrics import asr_scores, contains
from aura_jax.synth import speak_with

INSTRUCTION = "Give a simple one sentence answer."  # DiVA's prompt, as eval uses it

# (question, reference answers, kind): simple facts, yes/no and counts.
QUESTIONS = [
    ("What is the capital of France?", ["Paris"], "fact"),
    ("What is the capital of Japan?", ["Tokyo"], "fact"),
    ("What is the capital of Italy?", ["Rome"], "fact"),
    ("What is the capital of Germany?", ["Berlin"], "fact"),
    ("What is the capital of Spain?", ["Madrid"], "fact"),
    ("What is the capital of England?", ["London"], "fact"),
    ("What is the largest planet in our solar system?", ["Jupiter"], "fact"),
    ("Which planet is known as the red planet?", ["Mars"], "fact"),
    ("What is the closest star to the Earth?", ["the sun", "sun"], "fact"),
    ("Who wrote Romeo and Juliet?", ["Shakespeare"], "fact"),
    ("Who painted the Mona Lisa?", ["Leonardo", "da Vinci"], "fact"),
    ("What is the chemical symbol for water?", ["H2O"], "fact"),
    ("What gas do plants take in from the air?", ["carbon dioxide", "CO2"], "fact"),
    ("What is the largest ocean on Earth?", ["Pacific"], "fact"),
    ("What is the tallest mountain in the world?", ["Everest"], "fact"),
    ("What is the longest river in Africa?", ["Nile"], "fact"),
    ("What language is spoken in Brazil?", ["Portuguese"], "fact"),
    ("What is the freezing point of water in Celsius?", ["zero", "0"], "fact"),
    ("What color is the sky on a clear day?", ["blue"], "fact"),
    ("What animal is known as the king of the jungle?", ["lion"], "fact"),
    ("What do bees make?", ["honey"], "fact"),
    ("What is the main language spoken in Mexico?", ["Spanish"], "fact"),
    ("Which continent is Egypt in?", ["Africa"], "fact"),
    ("What is the hardest natural substance?", ["diamond"], "fact"),
    ("Is the sun a star?", ["yes"], "yes/no"),
    ("Is water wet?", ["yes"], "yes/no"),
    ("Can penguins fly?", ["no", "cannot", "can't"], "yes/no"),
    ("Is the moon bigger than the Earth?", ["no", "smaller"], "yes/no"),
    ("Do fish live in water?", ["yes"], "yes/no"),
    ("Is ice cold?", ["yes"], "yes/no"),
    ("How many legs does a spider have?", ["eight", "8"], "count"),
    ("How many days are in a week?", ["seven", "7"], "count"),
    ("How many continents are there?", ["seven", "7"], "count"),
    ("How many legs does a dog have?", ["four", "4"], "count"),
    ("How many months are in a year?", ["twelve", "12"], "count"),
    ("How many hours are in a day?", ["twenty four", "twenty-four", "24"], "count"),
    ("How many sides does a triangle have?", ["three", "3"], "count"),
    ("How many wheels does a bicycle have?", ["two", "2"], "count"),
    ("How many minutes are in an hour?", ["sixty", "60"], "count"),
    ("How many planets are in our solar system?", ["eight", "8"], "count"),
]

# (engine, voice): three engines, so that one can be held out whole when AuRA trains.
VOICES = [("espeak-ng", "en-us"), ("espeak-ng", "en-gb"), ("espeak-ng", "en-us+f3"),
          ("flite", "slt"), ("flite", "awb"), ("flite", "rms"), ("flite", "kal16"),
          ("festival", "slt_hts"), ("festival", "kal_diphone")]


def _timed(run):
    start = time.perf_counter()
    out = run()
    return out, time.perf_counter() - start


def run_baselines(llm_dir: str, whisper_dir: str, out: str | Path, *, voices=VOICES, questions=QUESTIONS,
                  max_new_tokens: int = 32, asr_tokens: int = 48, log=print) -> dict:
    """Gold over every question, then per voice: WER, cascade accuracy on the gold-filtered set, timings."""
    import os

    import torch

    from aura_jax.torch.systems import CascadeSystem

    torch.manual_seed(0)
    cascade = CascadeSystem(whisper_dir, llm_dir, "cpu", torch.float32)
    load = os.getloadavg()
    gold = []
    for question, answers, kind in questions:
        answer, seconds = _timed(lambda: cascade.answer(question, INSTRUCTION, max_new_tokens).strip())
        gold.append({"question": question, "answers": answers, "kind": kind, "gold": answer,
                     "gold_right": bool(contains(answer, answers)), "gold_s": seconds})
    kept = [g for g in gold if g["gold_right"]]
    log(f"gold: {len(kept)} of {len(gold)} questions answered right from the text")
    rows = []
    for engine, voice in voices:
        for g in kept:
            wave = speak_with(engine, voice, g["question"])
            transcript, asr_s = _timed(lambda: cascade.transcribe(wave, asr_tokens, fixed=False).strip())
            answer, llm_s = _timed(lambda: cascade.answer(transcript, INSTRUCTION, max_new_tokens).strip())
            rows.append({"engine": engine, "voice": voice, "question": g["question"], "kind": g["kind"],
                         "transcript": transcript, "cascade": answer, "right": bool(contains(answer, g["answers"])),
                         "asr_s": asr_s, "llm_s": llm_s, "audio_s": len(wave) / 16000})
        mine = [r for r in rows if (r["engine"], r["voice"]) == (engine, voice)]
        log(f"{engine}/{voice}: WER {100 * asr_scores([r['transcript'] for r in mine], [r['question'] for r in mine])['wer']:.1f} %, "
            f"cascade {sum(r['right'] for r in mine)}/{len(mine)}")
    result = {"llm": str(llm_dir), "whisper": str(whisper_dir), "instruction": INSTRUCTION,
              "load_average_before": [round(x, 2) for x in load],
              "load_average_after": [round(x, 2) for x in os.getloadavg()], "threads": torch.get_num_threads(),
              "gold": gold, "cascade": rows, "summary": summarize(gold, rows)}
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "baselines.json").write_text(json.dumps(result, indent=2))
    (out / "baselines.md").write_text(format_tables(result) + "\n")
    return result


def _group(rows, key) -> dict:
    groups: dict = {}
    for r in rows:
        groups.setdefault(key(r), []).append(r)
    return groups


def _stats(rows) -> dict:
    return {"n": len(rows), "wer": 100 * asr_scores([r["transcript"] for r in rows], [r["question"] for r in rows])["wer"],
            "cascade_acc": 100 * sum(r["right"] for r in rows) / len(rows),
            "cascade_s": statistics.median(r["asr_s"] + r["llm_s"] for r in rows),
            "asr_s": statistics.median(r["asr_s"] for r in rows)}


def summarize(gold, rows) -> dict:
    kept = [g for g in gold if g["gold_right"]]
    return {"questions": len(gold), "gold_right": len(kept),
            "gold_acc_all": 100 * len(kept) / len(gold),
            "gold_by_kind": {k: [sum(g["gold_right"] for g in v), len(v)] for k, v in _group(gold, lambda g: g["kind"]).items()},
            "gold_s": statistics.median(g["gold_s"] for g in kept),
            "by_voice": {f"{e}/{v}": _stats(rs) for (e, v), rs in _group(rows, lambda r: (r["engine"], r["voice"])).items()},
            "by_engine": {e: _stats(rs) for e, rs in _group(rows, lambda r: r["engine"]).items()},
            "all": _stats(rows)}


def format_tables(result: dict) -> str:
    s = result["summary"]
    kinds = ", ".join(f"{k} {a}/{n}" for k, (a, n) in s["gold_by_kind"].items())
    lines = [f"Gold (the LLM reads the text question): {s['gold_right']} of {s['questions']} right ({kinds}); "
             f"the spoken sets keep those {s['gold_right']}, so gold is 100 % on them. Median time per gold "
             f"answer {s['gold_s']:.2f} s.", "",
             "| voice | questions | Whisper WER % | cascade spoken QA % | gold % | cascade s / answer (ASR s) |",
             "|---|---|---|---|---|---|"]
    for name, st in list(s["by_voice"].items()) + [(f"**{e}**", st) for e, st in s["by_engine"].items()] + \
            [("**all**", s["all"])]:
        lines.append(f"| {name} | {st['n']} | {st['wer']:.1f} | {st['cascade_acc']:.1f} | 100 | "
                     f"{st['cascade_s']:.2f} ({st['asr_s']:.2f}) |")
    lines += ["", f"Load average before {result['load_average_before']}, after {result['load_average_after']}; "
              f"torch threads {result['threads']}."]
    return "\n".join(lines)


def add_arguments(p) -> None:
    p.add_argument("--llm", default=".cache/models/smollm2-135m-instruct", help="Hugging Face LLM directory")
    p.add_argument("--whisper", default=".cache/models/whisper-tiny.en", help="Hugging Face Whisper directory")
    p.add_argument("--out", default="runs/baselines", help="where baselines.json and baselines.md go")
    p.add_argument("--limit", type=int, default=None, help="only the first N questions (a quick look)")


def main(args) -> int:
    from aura_jax.hf import read_config

    read_config(args.llm), read_config(args.whisper)  # one-line errors for a missing directory
    result = run_baselines(args.llm, args.whisper, args.out, questions=QUESTIONS[:args.limit] if args.limit else QUESTIONS)
    print(format_tables(result))
    return 0
