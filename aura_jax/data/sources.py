"""Rows from each data source: CommonVoice releases, parquet / save_to_disk datasets,
QA JSONL, and synthetic speech / QA.

A reader yields `Row`s (a chat conversation plus, for speech, an `AudioRef`) or
`BadRow`s (a reason from REASONS and where it happened). Audio is not decoded
here; `aura_jax.data.scan` checks it.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Iterator

import numpy as np

from aura_jax.audio import SAMPLING_RATE, load_audio, load_audio_bytes, to_mono_16k
from aura_jax.config import PromptConfig, SourceConfig
from aura_jax.data import synthetic

# Why a row was skipped (the keys of the skip report).
REASONS = ("missing_file", "unreadable_audio", "empty_audio", "silent_audio", "audio_too_long", "empty_text",
           "non_utf8", "too_long", "bad_json", "placeholder_count", "malformed_row", "outside_clips_dir",
           "text_teacher_mismatch")


class DataError(ValueError):
    """A data source that cannot be read, or a bad row in strict mode (names the file and row)."""


@dataclasses.dataclass(frozen=True, eq=False)  # eq=False: may hold an array
class AudioRef:
    """Where a row's audio comes from: a file, encoded bytes, a decoded array or a synthesis recipe.

    `key` identifies the audio for the scan cache (file path + size + mtime, or the recipe).
    """

    key: str
    name: str  # for error messages
    path: str | None = None
    data: bytes | None = None
    array: np.ndarray | None = None
    sampling_rate: int = SAMPLING_RATE
    synth: tuple[str, str, int] | None = None  # (text, voice, seed)

    def load(self) -> np.ndarray:
        """Float32 mono 16 kHz waveform; raises AudioError if unreadable."""
        if self.path is not None:
            return load_audio(self.path)
        if self.data is not None:
            return load_audio_bytes(self.data, name=self.name)
        if self.array is not None:
            return to_mono_16k(self.array, self.sampling_rate)
        return synthetic.speech(*self.synth)


@dataclasses.dataclass
class Row:
    id: str
    kind: str  # "speech" | "text"
    messages: list[dict]  # chat turns; assistant turns are the CE targets
    where: str  # "file line n", for messages
    text: str = ""  # transcript (speech) or first answer (text)
    audio: AudioRef | None = None


@dataclasses.dataclass
class BadRow:
    reason: str
    where: str
    detail: str = ""


def spoken_question_messages(prompt: PromptConfig, instruction: str, answer: str) -> list[dict]:
    """System / "<audio> {instruction}" / answer: the clip is the question (as eval's spoken QA asks)."""
    system = [{"role": "system", "content": prompt.system}] if prompt.system else []
    return system + [{"role": "user", "content": f"{prompt.audio_token} {instruction}"},
                     {"role": "assistant", "content": answer}]


def asr_messages(prompt: PromptConfig, transcript: str) -> list[dict]:
    """System / "<audio> Transcribe the speech." / transcript."""
    return spoken_question_messages(prompt, prompt.asr_instruction, transcript)


def _file_ref(path: Path, where: str) -> AudioRef | BadRow:
    try:
        st = path.stat()
    except OSError:
        return BadRow("missing_file", where, str(path))
    if not path.is_file():
        return BadRow("missing_file", where, str(path))
    if st.st_size == 0:
        return BadRow("empty_audio", where, f"{path} is 0 bytes")
    return AudioRef(key=f"file:{path.resolve()}:{st.st_size}:{st.st_mtime_ns}", name=str(path), path=str(path))


def _file_key(path: Path) -> str:
    st = path.stat()
    return f"{path.resolve()}:{st.st_size}:{st.st_mtime_ns}"


# ---------------------------------------------------------------------------
# CommonVoice
# ---------------------------------------------------------------------------
def _text(raw, where: str) -> str | BadRow:
    """A transcript cell (bytes or str) as stripped text, or the reason it is unusable."""
    try:
        text = (raw.decode("utf-8") if isinstance(raw, bytes) else (raw or "")).strip()
    except UnicodeDecodeError as e:
        return BadRow("non_utf8", where, str(e))
    return text or BadRow("empty_text", where)


def read_commonvoice(src: SourceConfig, prompt: PromptConfig) -> Iterator[Row | BadRow]:
    """A CommonVoice release dir: `src.tsv` (tab-separated, no quoting) beside `clips/`. With
    `src.answer_column` each clip is a spoken question and that column holds its target answer."""
    root = Path(src.path)
    tsv, clips = root / src.tsv, root / "clips"
    clips_real = clips.resolve()
    if not tsv.is_file():
        raise DataError(f"commonvoice source {root}: {tsv.name} not found")
    # Streamed, and as bytes: an English validated.tsv has ~2M lines, and a line that is
    # not UTF-8 is one bad row, not a failed file.
    with tsv.open("rb") as f:
        header = f.readline().rstrip(b"\r\n").decode("utf-8", "replace").lstrip("\ufeff").split("\t")
        if "path" not in header or "sentence" not in header:
            raise DataError(f"{tsv}: header needs 'path' and 'sentence' columns, has {header}")
        if src.answer_column and src.answer_column not in header:
            raise DataError(f"{tsv}: data source answer_column={src.answer_column!r} is not a column (header: {header})")
        ip, isent = header.index("path"), header.index("sentence")
        ians = header.index(src.answer_column) if src.answer_column else None
        for n, line in enumerate(f, start=2):
            line = line.rstrip(b"\r\n")
            if not line.strip():
                continue
            where = f"{tsv} line {n}"
            fields = line.split(b"\t")
            if len(fields) <= max(ip, isent, ians or 0):
                yield BadRow("malformed_row", where, f"{len(fields)} columns, the header has {len(header)}")
                continue
            try:
                clip = fields[ip].decode("utf-8")
            except UnicodeDecodeError as e:
                yield BadRow("non_utf8", where, str(e))
                continue
            sentence = _text(fields[isent], where)
            if isinstance(sentence, BadRow):
                yield sentence
                continue
            path = clips / clip
            if not path.resolve().is_relative_to(clips_real):  # "../../etc/passwd", "/abs/path"
                yield BadRow("outside_clips_dir", where, f"{clip!r} is not inside {clips}")
                continue
            ref = _file_ref(path, where)
            if isinstance(ref, BadRow):
                yield ref
                continue
            if ians is None:
                messages = asr_messages(prompt, sentence)
            else:
                answer = _text(fields[ians], where)
                if isinstance(answer, BadRow):
                    yield answer
                    continue
                messages = spoken_question_messages(prompt, src.instruction.strip(), answer)
            yield Row(id=clip, kind="speech", messages=messages, where=where, text=sentence, audio=ref)


# ---------------------------------------------------------------------------
# Parquet / Hugging Face save_to_disk
# ---------------------------------------------------------------------------
def arrow_tables(root: Path) -> Iterator[tuple[Path, "pyarrow.Table"]]:
    import pyarrow as pa

    if root.is_file():
        yield root, _read_parquet(root)
        return
    if not root.is_dir():
        raise DataError(f"{root}: no such file or directory (a parquet file or dataset directory)")
    state = root / "state.json"
    if state.exists():  # datasets' save_to_disk: Arrow IPC stream files listed in state.json
        try:
            files = [root / f["filename"] for f in json.loads(state.read_text()).get("_data_files", [])]
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            raise DataError(f"{state}: not a datasets save_to_disk state.json ({type(e).__name__}: {e})") from None
        files = files or sorted(root.glob("data-*.arrow"))
        for f in files:
            try:
                with pa.memory_map(str(f)) as stream:
                    try:
                        table = pa.ipc.open_stream(stream).read_all()
                    except pa.ArrowInvalid:
                        table = pa.ipc.open_file(stream).read_all()
            except (pa.ArrowException, OSError) as e:
                raise DataError(f"{f}: not a readable Arrow file of a save_to_disk dataset ({e})") from None
            yield f, table
        return
    files = sorted(root.rglob("*.parquet"))
    if not files:
        raise DataError(f"parquet source {root}: no *.parquet files (nor a save_to_disk state.json)")
    for f in files:
        yield f, _read_parquet(f)


def _read_parquet(path: Path):
    """One parquet file as a table; a damaged or foreign file is one DataError naming it."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        return pq.read_table(path)
    except (pa.ArrowException, OSError) as e:
        raise DataError(f"{path}: not a readable parquet file ({e})") from None


def _texts(column) -> list[bytes | None]:
    """A text column as raw bytes per row (so invalid UTF-8 is one bad row, not a failed file)."""
    import pyarrow as pa

    if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
        column = column.cast(pa.large_binary())
    return column.to_pylist()


def read_parquet(src: SourceConfig, prompt: PromptConfig) -> Iterator[Row | BadRow]:
    """Parquet file(s) or a save_to_disk dir; audio is struct{bytes, path} or struct{array, sampling_rate}
    (or a path string); relative paths are relative to the dataset dir."""
    root = Path(src.path)
    base = root.parent if root.is_file() else root
    for file, table in arrow_tables(root):
        for col in (src.audio_column, src.text_column):
            if col not in table.column_names:
                raise DataError(f"{file}: no column {col!r} (columns: {table.column_names})")
        key = _file_key(file)
        audio = table.column(src.audio_column).to_pylist()
        texts = _texts(table.column(src.text_column))
        for i, (cell, raw) in enumerate(zip(audio, texts)):
            where = f"{file} row {i}"
            text = _text(raw, where)
            if isinstance(text, BadRow):
                yield text
                continue
            cell = {"path": cell} if isinstance(cell, str) else (cell or {})
            path = cell.get("path")
            name = f"{file.name}:{i}" + (f" ({path})" if path else "")
            if cell.get("bytes") is not None:
                if not cell["bytes"]:
                    yield BadRow("empty_audio", where, "0 audio bytes")
                    continue
                ref = AudioRef(key=f"{key}:{i}", name=name, data=cell["bytes"])
            elif cell.get("array") is not None:
                ref = AudioRef(key=f"{key}:{i}", name=name, array=np.asarray(cell["array"], np.float32),
                               sampling_rate=int(cell.get("sampling_rate") or SAMPLING_RATE))
            elif path:
                ref = _file_ref(Path(path) if os.path.isabs(path) else base / path, where)
                if isinstance(ref, BadRow):
                    yield ref
                    continue
            else:
                yield BadRow("missing_file", where, "audio cell has neither bytes nor path")
                continue
            yield Row(id=path or f"{file.name}:{i}", kind="speech", messages=asr_messages(prompt, text),
                      where=where, text=text, audio=ref)


# ---------------------------------------------------------------------------
# QA JSONL
# ---------------------------------------------------------------------------
ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant", "system": "system"}


def qa_messages(record: dict, prompt: PromptConfig) -> list[dict] | None:
    """VoRA {"conversations": [{"from", "value"}]} or {"question", "answer"} → chat messages.

    None if a turn is empty or there is no assistant turn. The configured system prompt is
    added when the record has none.
    """
    if "conversations" in record:
        turns = record["conversations"]
        messages = [{"role": ROLES[t.get("from", t.get("role"))],
                     "content": str(t.get("value", t.get("content")) or "").strip()} for t in turns]
    else:
        messages = [{"role": "user", "content": str(record.get("question") or "").strip()},
                    {"role": "assistant", "content": str(record.get("answer") or "").strip()}]
    if not messages or any(not m["content"] for m in messages):
        return None
    if not any(m["role"] == "assistant" for m in messages):
        return None
    if messages[0]["role"] != "system" and prompt.system:
        messages.insert(0, {"role": "system", "content": prompt.system})
    return messages


def read_qa_jsonl(src: SourceConfig, prompt: PromptConfig) -> Iterator[Row | BadRow]:
    """Text-only QA rows, one JSON object per line (or a .json file holding a list)."""
    path = Path(src.path)
    if not path.is_file():
        raise DataError(f"qa_jsonl source {path}: no such file")
    raw = path.read_bytes()
    if raw.lstrip()[:1] == b"[":  # a JSON array file
        try:
            records = [(f"{path} item {i}", r) for i, r in enumerate(json.loads(raw.decode("utf-8")))]
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise DataError(f"{path}: not valid UTF-8 JSON ({e})") from None
        lines = None
    else:
        lines = raw.split(b"\n")
    items = records if lines is None else ((f"{path} line {n}", line) for n, line in enumerate(lines, start=1))
    for where, item in items:
        if isinstance(item, bytes):
            if not item.strip():
                continue
            try:
                item = json.loads(item.decode("utf-8"))
            except UnicodeDecodeError as e:
                yield BadRow("non_utf8", where, str(e))
                continue
            except json.JSONDecodeError as e:
                yield BadRow("bad_json", where, str(e))
                continue
        try:
            messages = qa_messages(item, prompt) if isinstance(item, dict) else None
        except (KeyError, TypeError, AttributeError) as e:
            yield BadRow("bad_json", where, f"unexpected record layout ({e})")
            continue
        if messages is None:
            yield BadRow("empty_text", where)
            continue
        answer = next(m["content"] for m in messages if m["role"] == "assistant")
        yield Row(id=str(item.get("id", where)), kind="text", messages=messages, where=where, text=answer)


# ---------------------------------------------------------------------------
# Synthetic
# ---------------------------------------------------------------------------
def read_synthetic(src: SourceConfig, prompt: PromptConfig, kind: str) -> Iterator[Row]:
    """`src.num_rows` synthetic speech rows (espeak-ng voices) or QA rows, deterministic in (src.seed, row)."""
    for i in range(src.num_rows):
        where = f"synthetic {kind} seed {src.seed} row {i}"
        if kind == "speech":
            text, voice = synthetic.sentence(src.seed, i), synthetic.voice(i)
            ref = AudioRef(key=f"synth:{synthetic.engine()}:{voice}:{src.seed}:{text}", name=where,
                           synth=(text, voice, src.seed))
            yield Row(id=f"synthetic-{src.seed}-{i}", kind="speech", messages=asr_messages(prompt, text),
                      where=where, text=text, audio=ref)
        else:
            question, answer = synthetic.qa(src.seed, i)
            messages = qa_messages({"question": question, "answer": answer}, prompt)
            yield Row(id=f"synthetic-qa-{src.seed}-{i}", kind="text", messages=messages, where=where, text=answer)


def read_source(src: SourceConfig, prompt: PromptConfig, kind: str) -> Iterator[Row | BadRow]:
    """Rows of one configured source; `kind` is "speech" (data.speech) or "text" (data.text)."""
    readers = {"commonvoice": read_commonvoice, "parquet": read_parquet, "qa_jsonl": read_qa_jsonl}
    if src.type == "synthetic":
        rows = read_synthetic(src, prompt, kind)
    elif src.type in readers:
        rows = readers[src.type](src, prompt)
    else:
        raise DataError(f"data source type {src.type!r}: use commonvoice, parquet, qa_jsonl or synthetic")
    for row in rows:
        if isinstance(row, Row) and row.kind != kind:
            raise DataError(f"{row.where}: a {row.kind} row in data.{kind} (source type {src.type!r})")
        yield row
