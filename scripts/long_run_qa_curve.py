# usage: .venv/bin/python scripts/long_run_qa_curve.py RUN_DIR STEP [STEP ...] [--limit N]  (repository root)
"""Spoken QA at chosen checkpoints of a long run (the learning curves score ASR only): every spoken test
question of the demo corpus, answered by the JAX student restored at each STEP exactly as eval's `aura`
system answers (harness.aura_answers, greedy, 24 tokens), scored by "contains" per voice group.
Writes RUN_DIR/qa_curve.json ({step: {group: %, "all": %}})."""
import os
import json, sys, time
from pathlib import Path

from aura_jax.demo_real import RealStages
from aura_jax.evaluate.datasets import read_sdqa
from aura_jax.evaluate.harness import QA_INSTRUCTION, aura_answers
from aura_jax.evaluate.metrics import contains
from aura_jax.tokenizer import ChatTokenizer
from aura_jax.training.checkpoint import restore_student
from aura_jax.training.distributed import enable_compilation_cache

enable_compilation_cache("~/.cache/aura_jax/xla")
args = sys.argv[1:]
limit = int(args[args.index("--limit") + 1]) if "--limit" in args else None
if limit is not None:
    args = args[:args.index("--limit")]
run, steps = Path(args[0]), [int(s) for s in args[1:]]
st = RealStages(os.environ.get("DEMO", "runs/demo"), "full", 0)
groups = st.groups()
items = read_sdqa(st.corpus_dir / "sdqa")[:limit]
waves = [it.audio.load() for it in items]
path = run / "qa_curve.json"
curve = json.loads(path.read_text()) if path.exists() else {}
for step in steps:
    t = time.time()
    config, model, _ = restore_student(run, step, ["model.random_init="])
    tok = ChatTokenizer.from_pretrained(config.model.llm, audio_token=config.prompt.audio_token)
    answers = []
    for i in range(0, len(items), 8):
        answers += aura_answers(model, tok, config, QA_INSTRUCTION, waves[i:i + 8], 24)
    right = [contains(a, it.references) for a, it in zip(answers, items)]
    row = {g: 100 * sum(r for r, it in zip(right, items) if it.dialect in cols) /
           max(1, sum(it.dialect in cols for it in items)) for g, cols in groups.items()}
    row["all"] = 100 * sum(right) / len(right)
    row["examples"] = [[it.dialect, it.question, a] for it, a in list(zip(items, answers))[::37]]
    curve[str(step)] = row
    path.write_text(json.dumps(curve, indent=1))
    print(step, {k: round(v, 1) for k, v in row.items() if k != "examples"}, f"{time.time() - t:.0f} s", flush=True)
