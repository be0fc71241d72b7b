"""Reading data files record by record, each record judged as written.

JSON Lines, JSON arrays and Parquet files are read here, not through `datasets`' builders: the
json builder gives every column one type across the whole file, so one odd row changes how its
neighbours are read (a float label turns every label into a float, one non-string step turns the
number-like string steps of every row into numbers) and one bad line fails the whole file with no
line number. Here each record keeps the JSON types it was written with, and carries where it came
from (``FILE line N``, 1-based as an editor shows it; ``FILE row i``, 0-based, for Parquet), so a
bad record is reported, or skipped, alone.

A JSONL file is read in binary and decoded line by line: a UTF-8 byte-order mark at the start of
the file is ignored, a line that is not UTF-8 or not JSON becomes a `RecordError` for that line
only, blank lines are ignored and a last line without its newline is read like any other. A
``.json`` file whose first character is ``[`` is one top-level array, read element by element with
the line where each element starts; any other ``.json`` file is read as JSON Lines.
"""

from __future__ import annotations

import io
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: File suffixes this module reads, and how.
SUFFIXES = (".json", ".jsonl", ".parquet")

_BOM = b"\xef\xbb\xbf"
_WHITESPACE = " \t\n\r"


class RecordError(ValueError):
    """A malformed input record; names where it came from and which field is wrong."""

    def __init__(self, where: str, field_name: str, problem: str):
        self.where = where
        self.field = field_name
        self.problem = problem
        super().__init__(f"{where}: field '{field_name}': {problem}")

    def __reduce__(self) -> tuple[Any, ...]:  # picklable, e.g. across worker processes
        return (type(self), (self.where, self.field, self.problem))


@dataclass(frozen=True)
class SourceRecord:
    """One record of a file, as written, and where it is; or why it could not be read.

    `fatal` marks a read error after which the rest of the file cannot be located (a syntax error
    inside a JSON array, a ``.json`` file that is not UTF-8): it must not be skipped, because the
    records after it would disappear silently.
    """

    where: str
    raw: Any = None
    error: RecordError | None = None
    fatal: bool = False

    def value(self) -> Any:
        """The record's JSON value (any type, as written); raises its read error, if any."""
        if self.error is not None:
            raise self.error
        return self.raw


def json_type(value: Any) -> str:
    """The JSON name of a value's type (``null``, ``array``...), as a file would have written it."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list | tuple):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


def _decode(text: str, start: int = 0) -> tuple[Any, int, str | None]:
    """The JSON value at `start` of `text`, where it ends, and the first key that an object in it
    repeats (None when none does): `json` would silently keep the last of the two."""
    duplicates: list[str] = []

    def pairs_hook(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in pairs:
            if key in out:
                duplicates.append(key)
            out[key] = value
        return out

    value, end = json.JSONDecoder(object_pairs_hook=pairs_hook).raw_decode(text, start)
    return value, end, (duplicates[0] if duplicates else None)


def _duplicate(where: str, key: str) -> RecordError:
    return RecordError(where, "<json>", f"duplicate key {key!r} in one object")


def _parse(text: str, where: str) -> SourceRecord:
    """One JSON Lines record: exactly one JSON value, surrounding whitespace allowed."""
    start = len(text) - len(text.lstrip(_WHITESPACE))
    try:
        value, end, duplicate = _decode(text, start)
        if text[end:].strip(_WHITESPACE):
            raise json.JSONDecodeError("Extra data", text, end)
    except json.JSONDecodeError as exc:
        error = RecordError(where, "<json>", f"not valid JSON ({exc.msg})")
        return SourceRecord(where, error=error)
    if duplicate is not None:
        return SourceRecord(where, error=_duplicate(where, duplicate))
    return SourceRecord(where, value)


def _decode_error(exc: UnicodeDecodeError, line: bytes) -> str:
    """Which byte of `line` is not UTF-8, at which column (in characters, as an editor counts)."""
    column = len(line[: exc.start].decode("utf-8")) + 1
    byte = line[exc.start : exc.start + 1].hex()
    return f"not valid UTF-8 (byte 0x{byte} at column {column}: {exc.reason})"


def read_jsonl(path: str | os.PathLike[str], data: bytes | None = None) -> Iterator[SourceRecord]:
    """The records of a JSON Lines file, one a non-blank line, lazily, named ``PATH line N``.

    `data`, when given, is the file's content already read (e.g. to hash exactly the bytes that
    are parsed); `path` then only names the records."""
    path = Path(path)
    with path.open("rb") if data is None else io.BytesIO(data) as f:
        for lineno, line in enumerate(f, start=1):
            if lineno == 1 and line.startswith(_BOM):
                line = line[len(_BOM) :]
            where = f"{path} line {lineno}"
            try:
                text = line.decode("utf-8")
            except UnicodeDecodeError as exc:
                yield SourceRecord(
                    where, error=RecordError(where, "<encoding>", _decode_error(exc, line))
                )
                continue
            if not text.strip():
                continue
            yield _parse(text, where)


def read_json(path: str | os.PathLike[str], data: bytes | None = None) -> Iterator[SourceRecord]:
    """The records of a ``.json`` file: the elements of one top-level array, else JSON Lines."""
    path = Path(path)
    data = path.read_bytes() if data is None else data
    raw = data
    if data.startswith(_BOM):
        data = data[len(_BOM) :]
    if not data.lstrip().startswith(b"["):
        yield from read_jsonl(path, raw)
        return
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line_start = data.rfind(b"\n", 0, exc.start) + 1
        lineno = data.count(b"\n", 0, line_start) + 1
        where = f"{path} line {lineno}"
        line = data[line_start:]
        at = exc.start - line_start
        line_exc = UnicodeDecodeError("utf-8", line, at, at + 1, exc.reason)
        problem = f"{_decode_error(line_exc, line)}; the rest of the file cannot be read"
        yield SourceRecord(where, error=RecordError(where, "<encoding>", problem), fatal=True)
        return
    yield from _array_elements(text, path)


def _array_elements(text: str, path: Path) -> Iterator[SourceRecord]:
    """Elements of the JSON array `text`, each with the line where it starts."""
    line, seen = 1, 0  # `line` is the line number of text[seen]

    def where_at(index: int) -> str:
        nonlocal line, seen
        line += text.count("\n", seen, index)
        seen = index
        return f"{path} line {line}"

    def skip(index: int) -> int:
        while index < len(text) and text[index] in _WHITESPACE:
            index += 1
        return index

    def fatal(index: int, problem: str) -> SourceRecord:
        where = where_at(index)
        error = RecordError(where, "<json>", f"{problem}; the rest of the array cannot be read")
        return SourceRecord(where, error=error, fatal=True)

    index = skip(text.index("[") + 1)
    if index < len(text) and text[index] == "]":
        index = skip(index + 1)
        if index < len(text):
            yield fatal(index, "not valid JSON (Extra data after the array)")
        return
    while True:
        if index >= len(text):
            yield fatal(index, "not valid JSON (unterminated array)")
            return
        start = index
        try:
            value, index, duplicate = _decode(text, start)
        except json.JSONDecodeError as exc:
            yield fatal(exc.pos, f"not valid JSON ({exc.msg})")
            return
        where = where_at(start)
        if duplicate is not None:
            yield SourceRecord(where, error=_duplicate(where, duplicate))
        else:
            yield SourceRecord(where, value)
        index = skip(index)
        if index < len(text) and text[index] == ",":
            index = skip(index + 1)
            continue
        if index < len(text) and text[index] == "]":
            index = skip(index + 1)
            if index < len(text):
                yield fatal(index, "not valid JSON (Extra data after the array)")
            return
        yield fatal(index, "not valid JSON (expected ',' or ']' after an element)")
        return


def read_parquet(path: str | os.PathLike[str], data: bytes | None = None) -> Iterator[SourceRecord]:
    """The rows of a Parquet file as dicts, typed by the file's own schema, named ``PATH row i``."""
    import pyarrow.parquet as pq

    path = Path(path)
    i = 0
    source = path if data is None else io.BytesIO(data)
    for batch in pq.ParquetFile(source).iter_batches(batch_size=1024):
        for row in batch.to_pylist():
            yield SourceRecord(f"{path} row {i}", row)
            i += 1


def read_records(path: str | os.PathLike[str]) -> Iterator[SourceRecord]:
    """The records of a local ``.json``, ``.jsonl`` or ``.parquet`` file, by its suffix."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        return read_jsonl(path)
    if suffix == ".json":
        return read_json(path)
    if suffix == ".parquet":
        return read_parquet(path)
    raise ValueError(f"{path}: unsupported file type {path.suffix!r} (expected one of {SUFFIXES})")


def read_any(path: str | os.PathLike[str], data: bytes) -> Iterator[SourceRecord]:
    """The records of `data` (the bytes of `path`) by what the bytes are, whatever the suffix:
    Parquet (its ``PAR1`` magic), one JSON array (a first line that opens ``[`` and is not a
    whole JSON value by itself, or a ``.json`` file that starts with ``[``), else JSON Lines.

    For inputs named anything (a labeling run's ``--input``): read as JSON Lines, a Parquet
    file or a pretty-printed array would be one bad "record" per physical line, so a run that
    skips bad records would label nothing and report thousands of skips."""
    path = Path(path)
    if data.startswith(_PARQUET_MAGIC):
        return read_parquet(path, data)
    body = data[len(_BOM) :] if data.startswith(_BOM) else data
    if path.suffix.lower() == ".json" or _opens_array(body):
        return read_json(path, data)
    return read_jsonl(path, data)


_PARQUET_MAGIC = b"PAR1"


def _opens_array(body: bytes) -> bool:
    """Whether the first line opens a JSON array that it does not close (a pretty-printed one)."""
    if not body.lstrip().startswith(b"["):
        return False
    first = body.lstrip().split(b"\n", 1)[0]
    try:
        json.loads(first)
    except (ValueError, UnicodeDecodeError):
        return True
    return False
