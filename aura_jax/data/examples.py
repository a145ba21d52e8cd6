"""Rows → examples (token ids + target mask + audio reference) → batches in the format
`aura_jax.training.loss.aura_loss` consumes."""

from __future__ import annotations

import dataclasses
import functools

import numpy as np

from aura_jax.audio import N_FRAMES, SAMPLING_RATE, AudioError, log_mel_segments, log_mel_spectrogram
from aura_jax.data.sources import AudioRef, DataError, Row
from aura_jax.tokenizer import ChatTokenizer


@dataclasses.dataclass
class Example:
    id: str
    kind: str  # "speech" | "text"
    ids: np.ndarray  # int32 [n] rendered conversation
    loss_mask: np.ndarray  # bool [n] True on target tokens
    where: str
    text: str = ""
    audio: AudioRef | None = None
    frames: int = 0  # valid mel frames of the first 30 s (0 for text rows)
    samples: int = 0  # clip length in 16 kHz samples
    # the text teacher's conversation (loss.text_teacher_weight > 0): the spoken words as text where the
    # audio goes, the same targets; empty for text rows (no teacher targets)
    teacher_ids: np.ndarray | None = None
    teacher_mask: np.ndarray | None = None


def text_teacher_messages(row: Row, audio_token: str) -> list[dict]:
    """What the text teacher reads: the row's conversation with its spoken words (`row.text`: the
    transcript of an ASR clip, the question of a spoken question) where the audio placeholder is."""
    return [dict(m, content=m["content"].replace(audio_token, row.text, 1)) if m["role"] == "user" else m
            for m in row.messages]


def _targets(ids, mask) -> list[int]:
    return [i for i, m in zip(ids, mask) if m]


def tokenize(tokenizer: ChatTokenizer, row: Row, max_tokens: int, text_teacher: bool = False) -> Example | str:
    """The row as an Example, or the reason it is skipped (too_long, placeholder_count, empty_text,
    text_teacher_mismatch). `text_teacher`: also the text teacher's conversation (`text_teacher_messages`)."""
    ids, mask = tokenizer.conversation_ids(row.messages)
    if len(ids) > max_tokens:
        return "too_long"
    # Speech rows need exactly one placeholder; a text row must have none (it would be spliced as audio).
    if ids.count(tokenizer.audio_token_id) != (1 if row.kind == "speech" else 0):
        return "placeholder_count"
    if not any(mask):
        return "empty_text"
    ex = Example(id=row.id, kind=row.kind, ids=np.asarray(ids, np.int32), loss_mask=np.asarray(mask, bool),
                 where=row.where, text=row.text, audio=row.audio)
    if text_teacher:
        t_ids, t_mask = (tokenizer.conversation_ids(text_teacher_messages(row, tokenizer.audio_token))
                         if row.kind == "speech" else ([], []))
        if len(t_ids) > max_tokens:
            return "too_long"
        # The KL pairs the i-th target of one conversation with the i-th of the other: they must be the same tokens.
        if t_ids and _targets(t_ids, t_mask) != _targets(ids, mask):
            return "text_teacher_mismatch"
        ex.teacher_ids, ex.teacher_mask = np.asarray(t_ids, np.int32), np.asarray(t_mask, bool)
    return ex


@functools.lru_cache(maxsize=4)
def silence_features(n_mels: int) -> np.ndarray:
    """Log-mel of silence (what text rows carry as audio_features)."""
    f = log_mel_spectrogram(np.zeros(1, np.float32), SAMPLING_RATE, n_mels)
    f.setflags(write=False)
    return f


def has_teacher_features(frames: int, teacher_frames: int | str, teacher_segments: int) -> bool:
    """Whether the teacher needs features of its own: its window differs from the student's bucket
    (a 30 s window for a shorter bucket, several 30 s segments, or a short fixed window). With
    `teacher_frames="bucket"` the teacher hears the student's bucket itself (positions sliced)."""
    if teacher_frames == "bucket":
        return teacher_segments > 1
    return frames < teacher_frames or teacher_segments > 1 or teacher_frames < N_FRAMES


def batch_shapes(rows: int, text_len: int, frames: int, *, n_mels: int, teacher_segments: int,
                 teacher_frames: int | str = N_FRAMES,
                 text_teacher_len: int | None = None) -> dict[str, tuple[tuple[int, ...], type]]:
    """{key: (shape, dtype)} of a batch of `rows` rows, `text_len` text slots and `frames` student mel
    frames: what `BatchMaker` builds, and what `aura-jax aot` compiles for without data. The teacher
    gets its own features when its window differs from the student's (shorter clips' buckets,
    several 30 s segments, or a short teacher window); `text_teacher_len`: the text teacher's
    conversations (loss.text_teacher_weight > 0) in that many slots."""
    shapes = dict(input_ids=((rows, text_len), np.int32), attention_mask=((rows, text_len), np.bool_),
                  loss_mask=((rows, text_len), np.bool_), audio_features=((rows, n_mels, frames), np.float32),
                  audio_valid_frames=((rows,), np.int32))
    if has_teacher_features(frames, teacher_frames, teacher_segments):
        shapes["teacher_features"] = ((rows, teacher_segments, n_mels, teacher_frames), np.float32)
        shapes["teacher_valid_frames"] = ((rows, teacher_segments), np.int32)
    if text_teacher_len is not None:
        shapes.update(text_teacher_ids=((rows, text_teacher_len), np.int32),
                      text_teacher_attention_mask=((rows, text_teacher_len), np.bool_),
                      text_teacher_loss_mask=((rows, text_teacher_len), np.bool_))
    shapes["example_index"] = ((rows,), np.int64)
    return shapes


class BatchMaker:
    """Plan entry (bucket L, global row indices) → this process's batch (dict of numpy arrays).

    Shapes depend on the global rows only (T from the longest row of the global batch),
    so every process builds the same shapes and the shards concatenate to the global batch.
    """

    def __init__(self, examples: list[Example], *, n_mels: int, text_bucket: int, teacher_segments: int,
                 pad_id: int, process_index: int = 0, process_count: int = 1, teacher_frames: int | str = N_FRAMES,
                 text_teacher: bool = False, perturb=None, seed: int = 0):
        """perturb: a `PerturbConfig` whose knobs are on (speaker perturbation, `aura_jax.data.perturb`),
        drawn per (seed, step, row); None: the clips as they are."""
        self.examples, self.n_mels, self.text_bucket = examples, n_mels, text_bucket
        self.segments, self.pad_id, self.teacher_frames = teacher_segments, pad_id, teacher_frames
        self.process_index, self.process_count = process_index, process_count
        self.lengths = np.array([len(e.ids) for e in examples], np.int64)
        self.text_teacher = text_teacher
        self.perturb = perturb if perturb is not None and perturb.active else None
        self.seed = seed
        if text_teacher:
            self.teacher_lengths = np.array([len(e.teacher_ids) for e in examples], np.int64)

    def __call__(self, entry: tuple[int, np.ndarray], step: int | None = None) -> dict[str, np.ndarray]:
        """step: the plan index of `entry` (perturbations are drawn from it; required when they are on)."""
        if self.perturb is not None and step is None:
            raise ValueError("BatchMaker: perturbations are drawn per step; pass the entry's step")
        frames, rows = entry
        rows = np.asarray(rows, np.int64)
        t = int(self.lengths[rows].max())
        t = -(-t // self.text_bucket) * self.text_bucket
        b = len(rows) // self.process_count
        local = rows[self.process_index * b:(self.process_index + 1) * b]
        t2 = None
        if self.text_teacher:  # (at least one slot: a batch of text rows has no teacher tokens)
            t2 = -(-max(int(self.teacher_lengths[rows].max()), 1) // self.text_bucket) * self.text_bucket
        shapes = batch_shapes(b, t, frames, n_mels=self.n_mels, teacher_segments=self.segments,
                              teacher_frames=self.teacher_frames, text_teacher_len=t2)
        with_teacher = "teacher_features" in shapes
        batch = {k: np.zeros(shape, dtype) for k, (shape, dtype) in shapes.items()}
        batch["input_ids"][:] = self.pad_id
        batch["example_index"] = local.copy()
        for i, r in enumerate(local):
            ex = self.examples[r]
            n = len(ex.ids)
            batch["input_ids"][i, :n] = ex.ids
            batch["attention_mask"][i, :n] = True
            batch["loss_mask"][i, :n] = ex.loss_mask
            if self.text_teacher:
                n2 = len(ex.teacher_ids)
                batch["text_teacher_ids"][i] = self.pad_id
                batch["text_teacher_ids"][i, :n2] = ex.teacher_ids
                batch["text_teacher_attention_mask"][i, :n2] = True
                batch["text_teacher_loss_mask"][i, :n2] = ex.teacher_mask
            if ex.audio is None:
                batch["audio_features"][i] = silence_features(self.n_mels)[:, :frames]
                continue
            try:
                wave = ex.audio.load()
            except (AudioError, RuntimeError) as e:
                raise DataError(f"{ex.where}: audio became unreadable after the scan: {e}") from None
            # One featurization serves both: the student's window is the first L frames of segment 0
            # (so a perturbed clip is the same clip for the teacher).
            segs, valid = self._features(wave, with_teacher, step, int(r))
            batch["audio_features"][i] = segs[0, :, :frames]
            batch["audio_valid_frames"][i] = min(int(valid[0]), frames)
            if with_teacher:
                batch["teacher_features"][i, :len(segs)] = segs[..., :self.teacher_frames]
                batch["teacher_valid_frames"][i, :len(segs)] = np.minimum(valid, self.teacher_frames)
        return batch

    def _features(self, wave: np.ndarray, with_teacher: bool, step: int | None, row: int):
        segments = self.segments if with_teacher else 1
        if self.perturb is None:
            return log_mel_segments(wave, SAMPLING_RATE, self.n_mels, max_segments=segments)
        from aura_jax.data import perturb

        p = perturb.draw(self.perturb, perturb.rng_for(self.seed, step, row))
        segs, valid = log_mel_segments(perturb.shift_pitch(wave, p["semitones"]), SAMPLING_RATE, self.n_mels,
                                       max_segments=segments, filters=perturb.filters(self.n_mels, p["alpha"]))
        return perturb.spec_augment(segs, valid, self.perturb, p["spec_seed"]), valid
