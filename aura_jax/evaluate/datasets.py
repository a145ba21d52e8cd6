"""Evaluation sets read from local files in the layouts their hub versions use
(no hub at run time; users download once):

- SD-QA (`WillHeld/SD-QA` parquet): `id`, `question`, `answers` (list of str)
  and one audio column per dialect; the paper's 494 = dev rows with an answer.
- HeySQuAD human (`yijingwu/HeySQuAD_human`): `audio`, `question`, `context`,
  `answers` (list of {text, answer_start}), `is_impossible`, `id`; the paper's
  ~1K = validation rows with a non-empty answer.
- ASR: a CommonVoice release folder (`SPLIT.tsv` beside `clips/`) or parquet.
Audio cells are `{bytes, path}` structs as the datasets library writes them.

A split is chosen by file name (`split_files`, `commonvoice_tsv`): never silently
another split's file. The `*_candidates` readers yield an `EvalItem` per item to
evaluate, or a `BadRow` saying why a row is not one (the harness counts them).
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Iterator

import pyarrow as pa

from aura_jax.data.sources import AudioRef, BadRow, DataError, _file_ref, arrow_tables

SDQA_DIALECTS = ("usa", "gbr", "phl", "ind_s", "ind_n", "irl", "aus", "nzl", "nga", "zaf", "kenya")
EXCLUDED = ("no_answer",)  # rows outside the benchmark by definition (not bad rows; --strict ignores them)


@dataclasses.dataclass
class EvalItem:
    id: str
    dialect: str  # SD-QA dialect column, "" elsewhere
    question: str  # the dataset's text question (gold transcript)
    references: list[str]
    audio: AudioRef
    context: str = ""
    where: str = ""  # file and row, for messages


# ---------------------------------------------------------------------------
# Choosing a split's files
# ---------------------------------------------------------------------------
def _names_split(path: Path, root: Path, split: str) -> bool:
    """`dev.parquet`, `dev-00000-of-00001.parquet`, or any file under a `dev/` folder."""
    return bool(re.match(rf"{re.escape(split)}([-.]|$)", path.name)) or split in path.relative_to(root).parent.parts


def split_files(path: str | Path, split: str, explicit: bool = True) -> list[Path]:
    """The parquet files (or save_to_disk dirs) of `split` under `path`.

    A file is taken as given (a split asked for must be in its name). In a folder: `SPLIT/` (a
    save_to_disk split or a folder of parquet), or the parquet files named for the split. When none
    are, a folder of one file gives that file if the split was not asked for (`explicit=False`);
    otherwise a DataError lists the files there: another split's rows are never read instead."""
    path = Path(path)
    if path.is_file():
        if explicit and not _names_split(path, path.parent, split):
            raise DataError(f"{path}: --data names this file, whose name is not of split {split!r} (SPLIT.parquet "
                            "or SPLIT-*.parquet); leave out --split to read the file as given")
        return [path]
    if not path.is_dir():
        raise DataError(f"{path}: no such file or directory")
    if (path / split).is_dir():
        path = path / split
        if (path / "state.json").exists():
            return [path]
        files = sorted(path.rglob("*.parquet"))
        if not files:
            raise DataError(f"{path}: no *.parquet files (nor a save_to_disk state.json)")
        return files
    if (path / "state.json").exists():  # one save_to_disk dataset: a single split
        return [path]
    files = sorted(path.rglob("*.parquet"))
    if not files:
        raise DataError(f"{path}: no *.parquet files (nor a save_to_disk state.json)")
    chosen = [f for f in files if _names_split(f, path, split)]
    if chosen:
        return chosen
    if len(files) == 1 and not explicit:
        return files
    names = ", ".join(str(f.relative_to(path)) for f in files[:8]) + (", ..." if len(files) > 8 else "")
    raise DataError(f"{path}: no file of split {split!r} (files: {names}); pass --split NAME "
                    "(files NAME.parquet, NAME-*.parquet or under NAME/), or the file itself as --data")


def read_tables(files: list[Path]) -> Iterator[tuple[Path, pa.Table]]:
    """(file, table) of each parquet file / save_to_disk dir; an unreadable file is a DataError naming it."""
    for f in files:
        try:
            yield from arrow_tables(f)
        except (pa.ArrowException, OSError) as e:
            raise DataError(f"{f}: not a readable parquet file ({e})") from None


def check_parquet(files: list[Path]) -> None:
    """Read each parquet file's footer (cheap): a corrupt or truncated file is a DataError naming it."""
    import pyarrow.parquet as pq

    for f in files:
        if f.is_file():
            try:
                pq.ParquetFile(f).close()
            except (pa.ArrowException, OSError) as e:
                raise DataError(f"{f}: not a readable parquet file ({e})") from None


def commonvoice_tsv(root: str | Path, split: str | None) -> Path:
    """The TSV of `split` in a CommonVoice release folder: SPLIT.tsv. No split: test.tsv, or the
    folder's only TSV; several and no test.tsv is a DataError listing them (validated.tsv holds a
    release's training rows: it is read only when asked for, or when it is the only one)."""
    root = Path(root)
    present = sorted(p.name for p in root.glob("*.tsv"))
    listing = ", ".join(present) or "none"
    if split is not None:
        tsv = root / f"{split}.tsv"
        if not tsv.is_file():
            raise DataError(f"{root}: no {tsv.name} for --split {split} (TSVs here: {listing})")
        return tsv
    if (root / "test.tsv").is_file():
        return root / "test.tsv"
    if len(present) == 1:
        return root / present[0]
    raise DataError(f"{root}: no test.tsv (TSVs here: {listing}); pass --split NAME to read NAME.tsv")


# ---------------------------------------------------------------------------
# SD-QA and HeySQuAD
# ---------------------------------------------------------------------------
def _audio(cell, where: str, base: Path) -> AudioRef | BadRow:
    if not cell:
        return BadRow("missing_file", where, "no audio cell")
    if cell.get("bytes"):
        return AudioRef(key=where, name=where, data=cell["bytes"])
    if cell.get("path"):
        p = Path(cell["path"])
        return _file_ref(p if p.is_absolute() else base / p, where)
    if cell.get("bytes") is not None:
        return BadRow("empty_audio", where, "0 audio bytes")
    return BadRow("missing_file", where, "audio cell has neither bytes nor path")


def audio_columns(table) -> list[str]:
    """The SD-QA dialect columns when all are there; else every audio column (struct with bytes
    and path), in file order — the layout of sets spoken by other voices, e.g. `make-corpus`'s."""
    if all(d in table.column_names for d in SDQA_DIALECTS):
        return list(SDQA_DIALECTS)
    return [f.name for f in table.schema
            if pa.types.is_struct(f.type) and {"bytes", "path"} <= {c.name for c in f.type}]


def sdqa_candidates(path: str | Path, split: str = "dev", dialects=None,
                    explicit: bool = False) -> Iterator[EvalItem | BadRow]:
    """An item per (row, dialect); a row without an answer is `no_answer` (the paper's 494 are the
    rows with one), a dialect cell without usable audio a BadRow."""
    path = Path(path)
    base = path if path.is_dir() else path.parent
    files = split_files(path, split, explicit)
    check_parquet(files)
    for file, table in read_tables(files):
        columns = dialects or audio_columns(table)
        if not columns:
            raise DataError(f"{file}: not the SD-QA layout (no audio columns; columns {table.column_names})")
        missing = [c for c in ("id", "question", "answers", *columns) if c not in table.column_names]
        if missing:
            raise DataError(f"{file}: not the SD-QA layout (missing columns {missing})")
        cols = {c: table.column(c).to_pylist() for c in ("id", "question", "answers", *columns)}
        for i in range(table.num_rows):
            answers = [a for a in (cols["answers"][i] or []) if a and a.strip()]
            for dialect in columns:
                where = f"{file} row {i} ({dialect})"
                if not answers:
                    yield BadRow("no_answer", where)
                    continue
                audio = _audio(cols[dialect][i], where, base)
                if isinstance(audio, BadRow):
                    yield audio
                else:
                    yield EvalItem(str(cols["id"][i]), dialect, cols["question"][i], answers, audio, where=where)


def heysquad_candidates(path: str | Path, split: str = "validation",
                        explicit: bool = False) -> Iterator[EvalItem | BadRow]:
    path = Path(path)
    base = path if path.is_dir() else path.parent
    files = split_files(path, split, explicit)
    check_parquet(files)
    for file, table in read_tables(files):
        missing = [c for c in ("id", "question", "answers", "audio") if c not in table.column_names]
        if missing:
            raise DataError(f"{file}: not the HeySQuAD layout (missing columns {missing})")
        for i, row in enumerate(table.to_pylist()):
            where = f"{file} row {i}"
            answers = [a["text"] for a in (row.get("answers") or []) if a and (a.get("text") or "").strip()]
            if row.get("is_impossible") or not answers:
                yield BadRow("no_answer", where, "is_impossible" if row.get("is_impossible") else "")
                continue
            audio = _audio(row["audio"], where, base)
            if isinstance(audio, BadRow):
                yield audio
            else:
                yield EvalItem(str(row["id"]), "", row["question"], answers, audio, row.get("context") or "", where)


def read_sdqa(path: str | Path, split: str = "dev", dialects=None) -> list[EvalItem]:
    """SD-QA items, one per (row with an answer, dialect); `dialects` None → `audio_columns`."""
    return [c for c in sdqa_candidates(path, split, dialects) if isinstance(c, EvalItem)]


def read_heysquad(path: str | Path, split: str = "validation") -> list[EvalItem]:
    return [c for c in heysquad_candidates(path, split) if isinstance(c, EvalItem)]
