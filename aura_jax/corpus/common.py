"""Shared by the pretraining scripts: a BPE tokenizer trained on the corpus text (Qwen-style
special tokens and chat template), the done.json cache and the atomic output directory."""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
from pathlib import Path

from aura_jax.random_checkpoints import AUDIO_TOKEN, CHAT_TEMPLATE, SPECIAL_TOKENS


def train_tokenizer(texts: list[str], out_dir: str | Path, vocab_size: int = 512):
    """A byte-level BPE tokenizer trained on `texts`, saved to `out_dir` exactly like
    `random_checkpoints.make_tokenizer` (ids 0..3 = <|endoftext|>, <|im_start|>, <|im_end|>, <|audio|>;
    eos <|im_end|>, pad <|endoftext|>, Qwen-style chat template)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size - len(SPECIAL_TOKENS), special_tokens=SPECIAL_TOKENS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(texts, trainer=trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, chat_template=CHAT_TEMPLATE, eos_token="<|im_end|>",
                                   pad_token="<|endoftext|>", additional_special_tokens=[AUDIO_TOKEN])
    fast.save_pretrained(str(out_dir))
    return fast


def size_params(sizes: dict, size: str, overrides: dict) -> dict:
    """The preset `size` of `sizes`, with every override that is not None applied."""
    if size not in sizes:
        raise ValueError(f"size {size!r}: choose from {', '.join(sizes)}")
    return {k: (sizes[size][k] if v is None else v) for k, v in overrides.items()}


def warmup_cosine(peak: float, warmup: int, total: int, floor: float):
    """Learning rate at a step: linear warm-up to `peak`, then cosine down to `floor`·peak."""
    def lr_at(step: int) -> float:
        if step < warmup:
            return peak * (step + 1) / warmup
        t = (step - warmup) / max(1, total - warmup)
        return peak * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * t)))
    return lr_at


def cached(out_dir: Path, params: dict) -> dict | None:
    """The stored result if `out_dir/done.json` was written with the same parameters."""
    done = out_dir / "done.json"
    if done.exists():
        try:
            result = json.loads(done.read_text())
        except json.JSONDecodeError:
            return None
        if result.get("params") == params:
            return result
    return None


@contextlib.contextmanager
def atomic_dir(out_dir: Path):
    """Yields a temporary sibling of `out_dir`; on success it replaces `out_dir`, on error it is removed."""
    for stale in out_dir.parent.glob(f".{out_dir.name}.tmp-*"):  # left by a killed run (SIGKILL/SIGTERM)
        shutil.rmtree(stale, ignore_errors=True)
    tmp = out_dir.parent / f".{out_dir.name}.tmp-{os.getpid()}"
    tmp.mkdir(parents=True)
    try:
        yield tmp
        if out_dir.exists():
            shutil.rmtree(out_dir)
        tmp.rename(out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def write_done(directory: Path, result: dict) -> None:
    (directory / "done.json").write_text(json.dumps(result, indent=2))


def read_tsv(root: Path) -> list[tuple[Path, str]]:
    """(clip path, sentence) rows of a CommonVoice-layout dir written by make_corpus."""
    lines = (root / "validated.tsv").read_text(encoding="utf-8").splitlines()
    header = lines[0].split("\t")
    ip, isent = header.index("path"), header.index("sentence")
    rows = []
    for line in lines[1:]:
        if line.strip():
            f = line.split("\t")
            rows.append((root / "clips" / f[ip], f[isent]))
    return rows
