"""Up-front audio scan: decode every clip once to find bad audio and record its length
(needed for bucketing). Results are cached on disk by audio key (file path + size +
mtime, or a synthesis recipe), so a second run does no decoding."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from aura_jax.audio import AudioError
from aura_jax.data.sources import AudioRef

SILENCE_PEAK = 1e-4  # clips whose peak |x| is below this are "silent_audio"


def scan_one(ref: AudioRef) -> tuple[str, int]:
    """(reason or "", number of 16 kHz samples) for one clip."""
    try:
        x = ref.load()
    except AudioError as e:
        return ("empty_audio" if "no samples" in str(e) else "unreadable_audio"), 0
    if x.size == 0:
        return "empty_audio", 0
    if not np.isfinite(x).all() or float(np.abs(x).max()) < SILENCE_PEAK:
        return "silent_audio", int(x.size)
    return "", int(x.size)


class AudioScanner:
    """Scans clips in a thread pool; remembers results in `cache_dir/scan-<source>.json`."""

    def __init__(self, cache_dir: str | Path | None, source_id: str, threads: int = 4):
        self.threads = max(1, threads)
        self.path = None
        self.cache: dict[str, list] = {}
        if cache_dir:
            digest = hashlib.sha1(source_id.encode()).hexdigest()[:16]
            self.path = Path(cache_dir) / f"scan-{digest}.json"
            if self.path.exists():
                try:
                    self.cache = json.loads(self.path.read_text())
                except (OSError, ValueError):
                    self.cache = {}  # a damaged cache is only lost time
        self.dirty = False

    def scan(self, refs: list[AudioRef]) -> list[tuple[str, int]]:
        todo = list({r.key: r for r in refs if r.key not in self.cache}.values())
        if todo:
            with ThreadPoolExecutor(self.threads) as pool:
                for ref, result in zip(todo, pool.map(scan_one, todo)):
                    self.cache[ref.key] = list(result)
            self.dirty = True
        return [tuple(self.cache[r.key]) for r in refs]

    def save(self) -> None:
        if not (self.path and self.dirty):
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # Write-then-rename: processes sharing a cache dir never read a half-written file.
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".scan-", suffix=".json")
        with os.fdopen(fd, "w") as f:
            json.dump(self.cache, f)
        os.replace(tmp, self.path)
        self.dirty = False
