"""A tiny Qwen2 causal LM pretrained (all parameters) on the corpus text, so the frozen AuRA
backbone really knows the corpus language and the fact table.

Trained in PyTorch with transformers' `Qwen2ForCausalLM` (simplest: `save_pretrained` writes
the same Hugging Face directory as `random_checkpoints.make_qwen2`; a tiny model trains fast
on 2 CPU cores). The text: every line of `lm_text.txt` (facts, grammar sentences, QA as
plain text) plus every QA pair rendered through the LLM's own chat template the way the
AuRA pipeline and the evaluation use it — system prompt + question (text-QA training
rows) and system prompt + "question\\nGive a simple one sentence answer." (gold transcript
and cascade QA). The backbone knows every fact, as a real LLM knows SD-QA's facts; AuRA
training (text_qa.jsonl) never sees the spoken test questions.

Gold-QA exact match is measured with our JAX loader and batched greedy decoding
(`aura_jax.hf.from_pretrained`, `aura_jax.inference.generate`), the path `aura-jax eval --system gold` takes.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from aura_jax.config import PromptConfig
from aura_jax.corpus.common import atomic_dir, cached, size_params, train_tokenizer, warmup_cosine, write_done

QA_INSTRUCTION = "Give a simple one sentence answer."  # aura_jax.evaluate.harness.QA_INSTRUCTION (DiVA-Eval's)
SIZES = {
    "default": dict(steps=1000, hidden_size=128, layers=4, heads=4, kv_heads=2, intermediate_size=384,
                    batch_size=32),
    "quick": dict(steps=300, hidden_size=96, layers=2, heads=4, kv_heads=2, intermediate_size=256,
                  batch_size=32),
}


def _read_qa(corpus: Path) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """(text-QA train pairs, spoken-test pairs) of a corpus written by make_corpus."""
    import pyarrow.parquet as pq

    train = [(r["question"], r["answer"]) for r in map(json.loads, (corpus / "text_qa.jsonl").read_text().splitlines())
             if r]
    table = pq.read_table(corpus / "sdqa" / "dev.parquet", columns=["question", "answers"]).to_pylist()
    return train, [(r["question"], r["answers"][0]) for r in table]


def qa_conversations(question: str, answer: str, prompt: PromptConfig = PromptConfig(),
                     instructed: bool = False) -> list[list[dict]]:
    """The chat renderings a QA pair is trained in (AuRA text-QA rows; gold / cascade prompts), and with
    `instructed` also the spoken-QA prompt with the question's text where the audio would be
    ("question Give a simple one sentence answer.")."""
    system = [{"role": "system", "content": prompt.system}] if prompt.system else []
    asked = (question, f"{question}\n{QA_INSTRUCTION}") + ((f"{question} {QA_INSTRUCTION}",) if instructed else ())
    return [system + [{"role": "user", "content": q}, {"role": "assistant", "content": answer}] for q in asked]


def transcribe_conversations(sentences: list[str], prompt: PromptConfig = PromptConfig()) -> list[list[dict]]:
    """The ASR prompt with a sentence's text where the audio would be, answered by the sentence:
    "anna lives in paris Transcribe the speech." → "anna lives in paris". An instruction-tuned LLM
    (the paper's Qwen2.5-7B-Instruct) repeats text it is asked to transcribe; the tiny LM learns to,
    so that AuRA's LoRA has to teach it to read audio, not a new task."""
    system = [{"role": "system", "content": prompt.system}] if prompt.system else []
    return [system + [{"role": "user", "content": f"{s} {prompt.asr_instruction}"},
                      {"role": "assistant", "content": s}] for s in sentences]


def gold_qa(llm_dir, pairs: list[tuple[str, str]], *, batch_size: int = 64, max_new_tokens: int = 8) -> dict:
    """Exact match / F1 of the LLM answering the text questions (greedy, JAX), as `--system gold` asks them."""
    import jax.numpy as jnp

    from aura_jax.evaluate.metrics import qa_scores
    from aura_jax.hf import from_pretrained
    from aura_jax.inference.generate import generate
    from aura_jax.tokenizer import ChatTokenizer

    prompt = PromptConfig()
    model = from_pretrained(llm_dir)
    tok = ChatTokenizer.from_pretrained(llm_dir, prompt.audio_token)
    preds = []
    for s in range(0, len(pairs), batch_size):
        chunk = pairs[s:s + batch_size]
        rows = [tok.encode(tok.render([{"role": "system", "content": prompt.system},
                                       {"role": "user", "content": f"{q}\n{QA_INSTRUCTION}"}],
                                      add_generation_prompt=True)) for q, _ in chunk]
        width = max(map(len, rows))
        ids = np.full((len(rows), width), tok.pad_token_id, np.int32)
        mask = np.zeros((len(rows), width), bool)
        for i, r in enumerate(rows):  # left padding
            ids[i, width - len(r):], mask[i, width - len(r):] = r, True
        out = np.asarray(generate(model, jnp.asarray(ids), jnp.asarray(mask), max_new_tokens=max_new_tokens,
                                  eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id))
        for row in out.tolist():
            row = row[:row.index(tok.eos_token_id)] if tok.eos_token_id in row else row
            preds.append(tok.decode(row).strip())
    scores = [qa_scores(p, [a]) for p, (_, a) in zip(preds, pairs)]
    return {"exact_match": float(np.mean([s["exact_match"] for s in scores])) if scores else 0.0,
            "f1": float(np.mean([s["f1"] for s in scores])) if scores else 0.0, "n": len(pairs),
            "examples": [{"question": q, "answer": a, "prediction": p} for (q, a), p in zip(pairs[:5], preds[:5])]}


def pretrain_lm(corpus_dir, out_dir, *, steps: int | None = None, seed: int = 0, size: str = "default",
                hidden_size: int | None = None, layers: int | None = None, heads: int | None = None,
                kv_heads: int | None = None, intermediate_size: int | None = None, batch_size: int | None = None,
                vocab_size: int = 512, max_len: int = 96, learning_rate: float = 3e-3, warmup_steps: int = 50,
                qa_fraction: float = 0.5, include_test_qa: bool = True, eval_qa: bool = True,
                instruct_sentences: int = 0,
                progress: bool = True) -> dict:
    """Train the tiny Qwen2 on `corpus_dir` and save a Hugging Face LLM directory (config.json,
    model.safetensors, tokenizer.json, tokenizer_config.json with the chat template and
    <|im_start|> <|im_end|> <|endoftext|> <|audio|>) to `out_dir`. Returns (and writes as
    `out_dir/done.json`) params, initial / final loss, gold-QA exact match and wall time; a
    second call with the same parameters returns the stored result at once."""
    args = dict(steps=steps, hidden_size=hidden_size, layers=layers, heads=heads, kv_heads=kv_heads,
                intermediate_size=intermediate_size, batch_size=batch_size)
    hp = size_params(SIZES, size, args)
    corpus, out = Path(corpus_dir), Path(out_dir)
    stamp = json.loads((corpus / "corpus.json").read_text())
    params = {"corpus": stamp["params"], "seed": int(seed), **hp, "vocab_size": vocab_size, "max_len": max_len,
              "learning_rate": learning_rate, "warmup_steps": warmup_steps, "qa_fraction": qa_fraction,
              "include_test_qa": include_test_qa, "instruct_sentences": instruct_sentences,
              "eval_qa": eval_qa, "version": 2}
    if (hit := cached(out, params)) is not None:
        return hit

    import torch
    from tqdm import tqdm
    from transformers import Qwen2Config, Qwen2ForCausalLM

    from aura_jax.tokenizer import ChatTokenizer

    start = time.perf_counter()
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    train_qa, test_qa = _read_qa(corpus)
    test_q = {q for q, _ in test_qa}
    lines = [l for l in (corpus / "lm_text.txt").read_text(encoding="utf-8").splitlines() if l.strip()]
    known_qa = train_qa + test_qa
    if not include_test_qa:
        lines = [l for l in lines if not any(l.startswith(f"question {q} answer ") for q in test_q)]
        known_qa = train_qa
    conversations = [c for q, a in known_qa for c in qa_conversations(q, a, instructed=instruct_sentences > 0)]
    n_conv_qa = len(conversations)
    if instruct_sentences:  # plain sentences (not the "question ... answer ..." lines), a fixed sample
        plain = [l for l in lines if not l.startswith("question ")]
        picked = rng.choice(len(plain), min(instruct_sentences, len(plain)), replace=False)
        conversations += transcribe_conversations([plain[i] for i in sorted(picked)])

    with atomic_dir(out) as tmp:
        train_tokenizer(lines + _plain_renders(conversations), tmp, vocab_size)
        tok = ChatTokenizer.from_pretrained(tmp, PromptConfig().audio_token)
        examples = []  # (ids, target weights)
        for line in lines:
            ids = tok.encode(line)[: max_len - 1] + [tok.pad_token_id]  # <|endoftext|> ends a document
            examples.append((ids, [1.0] * len(ids)))
        for i, conv in enumerate(conversations):
            ids, mask = tok.conversation_ids(conv)
            if len(ids) > max_len and i >= n_conv_qa:
                continue  # a "transcribe this text" sentence too long for max_len: one fewer example
            if len(ids) > max_len:
                raise ValueError(f"a QA conversation is {len(ids)} tokens, longer than max_len={max_len}")
            examples.append((ids, [3.0 if m else 1.0 for m in mask]))  # answers weigh more
        n = len(examples)
        ids = np.full((n, max_len), tok.pad_token_id, np.int64)
        weights = np.zeros((n, max_len), np.float32)
        attention = np.zeros((n, max_len), np.int64)
        for i, (e, w) in enumerate(examples):
            ids[i, :len(e)], weights[i, :len(e)], attention[i, :len(e)] = e, w, 1

        config = Qwen2Config(vocab_size=vocab_size, hidden_size=hp["hidden_size"],
                             intermediate_size=hp["intermediate_size"], num_hidden_layers=hp["layers"],
                             num_attention_heads=hp["heads"], num_key_value_heads=hp["kv_heads"],
                             rope_theta=10000.0, tie_word_embeddings=True, max_position_embeddings=4096,
                             bos_token_id=None, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
        model = Qwen2ForCausalLM(config)
        model.train()
        decay = [p for p in model.parameters() if p.ndim >= 2]
        no_decay = [p for p in model.parameters() if p.ndim < 2]
        opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.01}, {"params": no_decay, "weight_decay": 0.0}],
                                lr=learning_rate, betas=(0.9, 0.98))
        total = hp["steps"]

        lr_at = warmup_cosine(learning_rate, warmup_steps, total, floor=0.05)

        # Each batch: a `qa_fraction` share of chat QA conversations (the facts the backbone must
        # know, a small part of the text), the rest plain lines; each part in epoch order.
        n_text = len(lines)
        # With instruct_sentences, a third stream of "transcribe this text" conversations (a quarter of
        # the QA share, taken from the plain lines' share: the facts keep their share).
        n_qa = min(hp["batch_size"] - 1, max(1, round(qa_fraction * hp["batch_size"]))) if conversations else 0
        n_ins = max(1, n_qa // 4) if n > n_text + n_conv_qa else 0
        streams = [[np.arange(n_text), rng.permutation(n_text), 0, hp["batch_size"] - n_qa - n_ins],
                   [np.arange(n_text, n_text + n_conv_qa), rng.permutation(n_conv_qa), 0, n_qa],
                   [np.arange(n_text + n_conv_qa, n), rng.permutation(n - n_text - n_conv_qa), 0, n_ins]]
        losses = []
        bar = tqdm(range(total), desc="lm", disable=not progress)
        for step in bar:
            picks = []
            for stream in streams:
                pool, order, pos, k = stream
                if k == 0 or len(pool) == 0:
                    continue
                if pos + k > len(order):
                    order, pos = rng.permutation(len(pool)), 0
                picks.append(pool[order[pos:pos + k]])
                stream[1], stream[2] = order, pos + k
            idx = np.sort(np.concatenate(picks))
            width = int(attention[idx].sum(1).max())
            x = torch.from_numpy(ids[idx, :width])
            m = torch.from_numpy(attention[idx, :width])
            w = torch.from_numpy(weights[idx, 1:width])
            for g in opt.param_groups:
                g["lr"] = lr_at(step)
            logits = model(input_ids=x, attention_mask=m).logits[:, :-1]
            nll = torch.nn.functional.cross_entropy(logits.reshape(-1, vocab_size), x[:, 1:].reshape(-1),
                                                    reduction="none").view_as(w)
            loss = (nll * w).sum() / w.sum()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            losses.append(float(loss.detach()))
            if step % 10 == 0:
                bar.set_postfix(loss=f"{np.mean(losses[-10:]):.3f}")
        train_seconds = time.perf_counter() - start
        model.eval()
        model.save_pretrained(str(tmp))
        result = {"params": params, "kind": "qwen2", "out_dir": str(out), "framework": "torch (transformers)",
                  "initial_loss": float(np.mean(losses[:5])), "final_loss": float(np.mean(losses[-20:])),
            "loss_history": [round(float(np.mean(losses[i:i + 10])), 4) for i in range(0, len(losses), 10)],
                  "examples_trained": n, "num_parameters": int(sum(p.numel() for p in model.parameters())),
                  "train_seconds": round(train_seconds, 1)}
        if eval_qa:
            result["gold_qa_test"] = gold_qa(tmp, test_qa)  # the spoken test questions, as text
            result["gold_qa_train"] = gold_qa(tmp, train_qa)
        result["seconds"] = round(time.perf_counter() - start, 1)
        write_done(tmp, result)
    return result


def _plain_renders(conversations):
    """Chat-template text of the conversations (for the tokenizer's BPE merges)."""
    from aura_jax.random_checkpoints import CHAT_TEMPLATE
    from aura_jax.tokenizer import compile_template

    template = compile_template(CHAT_TEMPLATE)
    return [template.render(messages=c, add_generation_prompt=False) for c in conversations]
