"""The deterministic plan: which global rows form batch g, and at which audio bucket.

Per epoch e: the speech rows plus this epoch's share of the text pool, permuted by
`numpy.random.default_rng([seed, e])`, dealt in order into per-bucket queues; a
queue that reaches `batch_size` rows is the next batch. Each bucket's remainder
at the end of an epoch is dropped. Batch g is a pure function of the row table,
the config and g.
"""

from __future__ import annotations

import functools
import math

import numpy as np

from aura_jax.audio import N_FRAMES
from aura_jax.data.sources import DataError


def bucket_of(frames: np.ndarray, is_speech: np.ndarray, buckets: list[int]) -> np.ndarray:
    """Smallest bucket ≥ a speech row's valid frames (the largest if none is); text rows → smallest."""
    b = np.asarray(sorted(buckets))
    idx = np.minimum(np.searchsorted(b, np.minimum(frames, N_FRAMES), side="left"), len(b) - 1)
    return np.where(is_speech, b[idx], b[0])


class Plan:
    """A sequence of `num_steps` global batches: plan[g] = (bucket frames L, global row indices [batch_size])."""

    def __init__(self, is_speech: np.ndarray, frames: np.ndarray, *, batch_size: int, buckets: list[int],
                 seed: int = 0, shuffle: bool = True, speech_fraction: float | None = None,
                 steps: int | None = None, epochs: float = 1.0):
        self.is_speech = np.asarray(is_speech, bool)
        self.batch_size, self.seed, self.shuffle = int(batch_size), int(seed), shuffle
        self.buckets = sorted(buckets)
        self.bucket = bucket_of(np.asarray(frames), self.is_speech, self.buckets)
        self.speech = np.flatnonzero(self.is_speech)
        self.text = np.flatnonzero(~self.is_speech)
        s, x = len(self.speech), len(self.text)
        if speech_fraction is None:
            self.text_per_epoch = x
        else:
            if not 0.0 <= speech_fraction <= 1.0:
                raise DataError(f"data.speech_fraction={speech_fraction} must be in [0, 1]")
            if speech_fraction == 0.0:
                self.speech = self.speech[:0]
                self.text_per_epoch = x
            else:
                self.text_per_epoch = round(s * (1.0 - speech_fraction) / speech_fraction)
                if s == 0:
                    raise DataError(f"data.speech_fraction={speech_fraction} but there are no speech rows")
            if self.text_per_epoch and x == 0:
                raise DataError(f"data.speech_fraction={speech_fraction} needs text rows but there are none")
        # Every epoch holds the same rows per bucket, so the batch count is the same too.
        counts = {L: int((self.bucket[self.speech] == L).sum()) for L in self.buckets}
        counts[self.buckets[0]] += self.text_per_epoch
        self.batches_per_epoch = sum(c // self.batch_size for c in counts.values())
        self.dropped_per_epoch = sum(c % self.batch_size for c in counts.values())
        if self.batches_per_epoch == 0:
            raise DataError(f"no full batch: {sum(counts.values())} rows per epoch, batch_size {self.batch_size} "
                            f"(rows per bucket: {counts})")
        self.num_steps = int(steps) if steps is not None else int(math.floor(epochs * self.batches_per_epoch))
        if self.num_steps < 1:
            raise DataError(f"the plan has no steps (epochs={epochs}, {self.batches_per_epoch} batches per epoch)")

    def __len__(self) -> int:
        return self.num_steps

    def __getitem__(self, g: int) -> tuple[int, np.ndarray]:
        g = int(g)
        if not 0 <= g < self.num_steps:
            raise IndexError(f"batch {g} outside the plan of {self.num_steps}")
        return self.epoch(g // self.batches_per_epoch)[g % self.batches_per_epoch]

    def _text_rows(self, e: int) -> np.ndarray:
        """Epoch e's slice of an endless stream of text-pool permutations (subsampling or cycling)."""
        n, x = self.text_per_epoch, len(self.text)
        if n == 0:
            return self.text[:0]
        start, stop = e * n, (e + 1) * n
        parts = []
        for k in range(start // x, (stop - 1) // x + 1):
            cycle = (np.random.default_rng([self.seed, k, 1]).permutation(self.text) if self.shuffle
                     else self.text)
            parts.append(cycle[max(start - k * x, 0):min(stop - k * x, x)])
        return np.concatenate(parts)

    @functools.lru_cache(maxsize=2)
    def epoch(self, e: int) -> list[tuple[int, np.ndarray]]:
        """Epoch e's batches in order."""
        rows = np.concatenate([self.speech, self._text_rows(e)])
        if self.shuffle:
            rows = np.random.default_rng([self.seed, e]).permutation(rows)
        queues: dict[int, list[int]] = {L: [] for L in self.buckets}
        batches = []
        for r in rows.tolist():
            q = queues[int(self.bucket[r])]
            q.append(r)
            if len(q) == self.batch_size:
                batches.append((int(self.bucket[r]), np.asarray(q, np.int64)))
                q.clear()
        return batches
