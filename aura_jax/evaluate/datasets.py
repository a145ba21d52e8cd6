"""Evaluation sets read from local files in the layouts their hub versions use
(no hub at run time; users download once):

- SD-QA (`WillHeld/SD-QA` parquet): `id`, `question`, `answers` (list of str)
  and one audio column per dialect; the paper's 494 = dev rows with an answer.
- HeySQuAD human (`yijingwu/HeySQuAD_human`): `audio`, `question`, `context`,
  `answers` (list of {text, answer_start}), `is_impossible`, `id`; the paper's
  ~1K = validation rows with a non-empty answer.
Audio cells are `{bytes, path}` structs as the datasets library writes them.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pyarrow as pa

from aura_jax.data.sources import AudioRef, DataError, arrow_tables

SDQA_DIALECTS = ("usa", "gbr", "phl", "ind_s", "ind_n", "irl", "aus", "nzl", "nga", "zaf", "kenya")


@dataclasses.dataclass
class EvalItem:
    id: str
    dialect: str  # SD-QA dialect column, "" elsewhere
    question: str  # the dataset's text question (gold transcript)
    references: list[str]
    audio: AudioRef
    context: str = ""


def _split_tables(path: Path, split: str):
    """Tables of `split`: a file as given, or the files of a dir whose names start with the split."""
    tables = list(arrow_tables(path))
    if path.is_dir():
        chosen = [(f, t) for f, t in tables if f.name.startswith(split) or f.parent.name == split]
        tables = chosen or tables
    return tables


def _audio(cell, where: str, base: Path) -> AudioRef | None:
    if not cell:
        return None
    if cell.get("bytes"):
        return AudioRef(key=where, name=where, data=cell["bytes"])
    if cell.get("path"):
        p = Path(cell["path"])
        return AudioRef(key=where, name=where, path=str(p if p.is_absolute() else base / p))
    return None


def audio_columns(table) -> list[str]:
    """The SD-QA dialect columns when all are there; else every audio column (struct with bytes
    and path), in file order — the layout of sets spoken by other voices, e.g. `make-corpus`'s."""
    if all(d in table.column_names for d in SDQA_DIALECTS):
        return list(SDQA_DIALECTS)
    return [f.name for f in table.schema
            if pa.types.is_struct(f.type) and {"bytes", "path"} <= {c.name for c in f.type}]


def read_sdqa(path: str | Path, split: str = "dev", dialects=None) -> list[EvalItem]:
    """SD-QA items, one per (row with an answer, dialect); `dialects` None → `audio_columns`."""
    path = Path(path)
    base = path if path.is_dir() else path.parent
    items = []
    for file, table in _split_tables(path, split):
        columns = dialects or audio_columns(table)
        if not columns:
            raise DataError(f"{file}: not the SD-QA layout (no audio columns; columns {table.column_names})")
        missing = [c for c in ("id", "question", "answers", *columns) if c not in table.column_names]
        if missing:
            raise DataError(f"{file}: not the SD-QA layout (missing columns {missing})")
        cols = {c: table.column(c).to_pylist() for c in ("id", "question", "answers", *columns)}
        for i in range(table.num_rows):
            answers = [a for a in (cols["answers"][i] or []) if a and a.strip()]
            if not answers:  # the paper's 494: rows with at least one answer
                continue
            for dialect in columns:
                audio = _audio(cols[dialect][i], f"{file.name}:{i}:{dialect}", base)
                if audio is not None:
                    items.append(EvalItem(str(cols["id"][i]), dialect, cols["question"][i], answers, audio))
    return items


def read_heysquad(path: str | Path, split: str = "validation") -> list[EvalItem]:
    path = Path(path)
    base = path if path.is_dir() else path.parent
    items = []
    for file, table in _split_tables(path, split):
        missing = [c for c in ("id", "question", "answers", "audio") if c not in table.column_names]
        if missing:
            raise DataError(f"{file}: not the HeySQuAD layout (missing columns {missing})")
        rows = table.to_pylist()
        for i, row in enumerate(rows):
            answers = [a["text"] for a in (row.get("answers") or []) if a and (a.get("text") or "").strip()]
            if row.get("is_impossible") or not answers:
                continue
            audio = _audio(row["audio"], f"{file.name}:{i}", base)
            if audio is not None:
                items.append(EvalItem(str(row["id"]), "", row["question"], answers, audio, row.get("context") or ""))
    return items
