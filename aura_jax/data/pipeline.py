"""The training input pipeline: sources → checked examples → plan → grain iterator of batches."""

from __future__ import annotations

import collections
import itertools
import json
from pathlib import Path

import grain
import numpy as np

from aura_jax.audio import HOP_LENGTH, N_FRAMES, mel_filters, num_valid_frames
from aura_jax.config import Config, ConfigError
from aura_jax.data.examples import BatchMaker, Example, tokenize
from aura_jax.data.plan import Plan
from aura_jax.data.scan import AudioScanner
from aura_jax.data.sources import BadRow, DataError, read_source
from aura_jax.tokenizer import ChatTokenizer

CHUNK = 256  # rows scanned per round (a `limit` stops the scan early)


def cache_dir(config: Config) -> Path | None:
    if config.data.cache_dir:
        return Path(config.data.cache_dir)
    return Path(config.run_dir) / "data_cache" if config.run_dir else None


def load_examples(config: Config, tokenizer: ChatTokenizer) -> tuple[list[Example], dict]:
    """All usable examples (data.speech sources first, then data.text) and the skip counts by reason."""
    data, skipped = config.data, collections.Counter()
    examples: list[Example] = []
    max_samples = max_audio_samples(config)
    text_teacher = config.loss.text_teacher_weight > 0

    def skip(bad: BadRow) -> None:
        if data.strict:
            raise DataError(f"{bad.where}: {bad.reason}" + (f" ({bad.detail})" if bad.detail else ""))
        skipped[bad.reason] += 1

    for kind, sources in (("speech", data.speech), ("text", data.text)):
        for src in sources:
            # One cache file per dataset; entries are keyed per clip, so `limit` etc. may change freely.
            scanner = AudioScanner(cache_dir(config), json.dumps([src.type, str(Path(src.path).resolve()), src.tsv]),
                                   data.worker_threads)
            rows, taken = read_source(src, config.prompt, kind), 0
            # Chunks, so that a `limit` on a huge TSV decodes only about `limit` clips.
            while src.limit is None or taken < src.limit:
                chunk = list(itertools.islice(rows, CHUNK))
                if not chunk:
                    break
                good = []
                for row in chunk:
                    ex = row if isinstance(row, BadRow) else tokenize(tokenizer, row, data.max_text_tokens,
                                                                     text_teacher)
                    if isinstance(ex, str):
                        ex = BadRow(ex, row.where)
                    if isinstance(ex, BadRow):
                        skip(ex)
                    else:
                        good.append(ex)
                scans = iter(scanner.scan([ex.audio for ex in good if ex.audio is not None]))
                kept = []
                for ex in good:
                    if ex.audio is not None:
                        reason, ex.samples = next(scans)
                        if reason:
                            skip(BadRow(reason, ex.where, ex.audio.name))
                            continue
                        if ex.samples > max_samples:  # its transcript speaks of audio the model never hears
                            skip(BadRow("audio_too_long", ex.where, f"{ex.audio.name}: {ex.samples / 16000:.1f} s, "
                                        f"the window is {max_samples / 16000:.1f} s"))
                            continue
                        ex.frames = num_valid_frames(ex.samples)
                    kept.append(ex)
                good = kept
                if src.limit is not None:
                    good = good[:src.limit - taken]
                examples += good
                taken += len(good)
            scanner.save()
    kinds = collections.Counter(ex.kind for ex in examples)
    return examples, {"skipped": dict(skipped), "speech_rows": kinds["speech"], "text_rows": kinds["text"]}


def max_audio_samples(config: Config) -> int:
    """The longest clip a speech row may have: what the student hears (audio.num_frames, or the
    largest of data.audio_buckets if smaller); with audio.teacher_segments > 1, that many 30 s
    segments (the configuration for long clips: the teacher hears them all, the student its first
    window)."""
    a = config.audio
    frames = (min(a.num_frames, max(config.data.audio_buckets)) if a.teacher_segments == 1
              else a.teacher_segments * N_FRAMES)
    return frames * HOP_LENGTH


def format_stats(stats: dict) -> str:
    skipped = ", ".join(f"{k}={v}" for k, v in sorted(stats["skipped"].items())) or "none"
    return (f"data: {stats['speech_rows']} speech + {stats['text_rows']} text rows used; skipped: {skipped}; "
            f"{stats['batches_per_epoch']} batches/epoch ({stats['dropped_per_epoch']} rows/epoch dropped as "
            f"bucket remainders), {stats['steps']} steps")


class TrainData:
    """This process's training batches: `iterator()` yields them in plan order.

    `stats`: {"skipped": {reason: count}, "speech_rows", "text_rows", "batches_per_epoch",
    "dropped_per_epoch", "steps"}; `num_steps`: batches in the plan.
    """

    def __init__(self, config: Config, tokenizer: ChatTokenizer, process_index: int = 0, process_count: int = 1,
                 verbose: bool = True):
        data = config.data
        if config.batch_size % process_count:
            raise ConfigError(f"batch_size={config.batch_size} is not divisible by the {process_count} processes")
        if not 0 <= process_index < process_count:
            raise ValueError(f"process_index {process_index} outside 0..{process_count - 1}")
        for L in data.audio_buckets:
            if not 0 < L <= config.audio.num_frames or L % config.audio.patch_frames:
                raise ConfigError(f"data.audio_buckets: {L} must be in 1..audio.num_frames="
                                  f"{config.audio.num_frames} and a multiple of audio.patch_frames="
                                  f"{config.audio.patch_frames}")
        if not data.audio_buckets or data.text_bucket < 1:
            raise ConfigError("data.audio_buckets must be non-empty and data.text_bucket >= 1")
        self.config, self.tokenizer = config, tokenizer
        mel_filters(config.audio.n_mels)  # librosa (and scipy) imported here, not first in a worker thread
        self.examples, self.stats = load_examples(config, tokenizer)
        if not self.examples:
            raise DataError(f"no usable rows (skipped: {self.stats['skipped']})")
        self.plan = Plan(np.array([e.kind == "speech" for e in self.examples]),
                         np.array([e.frames for e in self.examples]), batch_size=config.batch_size,
                         buckets=data.audio_buckets, seed=config.seed, shuffle=data.shuffle,
                         speech_fraction=data.speech_fraction, steps=config.steps, epochs=config.epochs)
        self.num_steps = len(self.plan)
        self.stats.update(batches_per_epoch=self.plan.batches_per_epoch,
                          dropped_per_epoch=self.plan.dropped_per_epoch, steps=self.num_steps)
        self.make_batch = BatchMaker(self.examples, n_mels=config.audio.n_mels, text_bucket=data.text_bucket,
                                     teacher_segments=config.audio.teacher_segments, pad_id=tokenizer.pad_token_id,
                                     teacher_frames=config.audio.teacher_frames,
                                     text_teacher=config.loss.text_teacher_weight > 0,
                                     process_index=process_index, process_count=process_count,
                                     perturb=config.perturb, seed=config.seed)
        if verbose and process_index == 0:
            print(format_stats(self.stats), flush=True)

    def batch(self, step: int) -> dict[str, np.ndarray]:
        """This process's batch for `step` (random access; the iterator yields the same)."""
        return self.make_batch(self.plan[step], step)

    def dataset(self) -> grain.MapDataset:
        return grain.MapDataset.source(self.plan).map_with_index(lambda step, entry: self.make_batch(entry, step))

    def iterator(self) -> grain.DatasetIterator:
        """Batches 0..num_steps-1 in order; checkpointable (get_state/set_state, grain.checkpoint)."""
        # Each thread builds a whole batch; prefetch bounds how many batches sit in memory.
        prefetch = max(1, self.config.data.prefetch_batches)
        options = grain.ReadOptions(num_threads=min(max(1, self.config.data.worker_threads), prefetch),
                                    prefetch_buffer_size=prefetch)
        return iter(self.dataset().to_iter_dataset(options))
