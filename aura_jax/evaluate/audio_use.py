"""Does the student use the audio? Its teacher-forced cross-entropy on an ASR set's transcripts when
each row hears its own clip, against the same rows hearing another row's clip (the batch's audio
rolled by one row). A student that has only learned the transcripts' language scores the same on
both; the gap is what hearing buys, in nats per transcript token, before greedy decoding can show it."""

from __future__ import annotations

import numpy as np


def audio_use(run_dir: str, asr_dir: str, *, batches: int = 4, batch_size: int = 8, step: int | None = None) -> dict:
    """{"step", "rows", "ce_own_audio", "ce_other_audio", "gap"} for the run's student at `step` on the
    first `batches` batches of `asr_dir` (CommonVoice layout), in the run's prompt and buckets."""
    from flax import nnx

    from aura_jax.data.pipeline import TrainData
    from aura_jax.tokenizer import ChatTokenizer
    from aura_jax.training.checkpoint import restore_student
    from aura_jax.training.loss import student_cross_entropy

    overrides = [f"data.speech=[{{type: commonvoice, path: {asr_dir}}}]", "data.text=[]", "data.speech_fraction=null",
                 "data.shuffle=false", f"batch_size={batch_size}", f"steps={batches}"]
    config, model, step = restore_student(run_dir, step, overrides)
    tok = ChatTokenizer.from_pretrained(config.model.llm, audio_token=config.prompt.audio_token)
    data = TrainData(config, tok, verbose=False)
    ce = nnx.jit(lambda m, b: student_cross_entropy(m, b)[1:])
    own, other, counts = [], [], []
    for i in range(min(batches, data.num_steps)):
        batch = {k: v for k, v in data.batch(i).items() if not k.startswith("teacher")}
        rolled = dict(batch, audio_features=np.roll(batch["audio_features"], 1, axis=0))
        (a, n), (b, _) = ce(model, batch), ce(model, rolled)
        own.append(float(a)), other.append(float(b)), counts.append(float(n))
    w = np.array(counts) / sum(counts)
    result = {"step": step, "rows": len(counts) * batch_size, "ce_own_audio": float(np.dot(w, own)),
              "ce_other_audio": float(np.dot(w, other))}
    result["gap"] = result["ce_other_audio"] - result["ce_own_audio"]
    return result
