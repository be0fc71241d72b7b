"""The one trajectory record used everywhere in the suite, its validation and its on-disk forms.

A trajectory is a question, a chain of reasoning steps and what is known about them. It is stored
as JSONL (which `datasets.load_dataset("json", ...)` can also read), and it maps losslessly to and
from the stepwise-supervision layout of PRM trainers (`prompt`, `completions`, `labels`).

Malformed input never disappears silently: validation raises a `RecordError` that names the file,
the line (or row index) and the field; with ``skip_invalid=True`` such records are skipped and
collected so the caller can report how many and why. Files are read with `cpmi_lib.core.records`,
line
by line in binary, so each record is judged as written and alone: a line that is not UTF-8 or not
JSON is an error for that line only, and a UTF-8 byte-order mark at the start is ignored.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from cpmi_lib.core.files import write_atomically
from cpmi_lib.core.records import RecordError, json_type, read_jsonl

log = logging.getLogger(__name__)

#: Columns of the stepwise-supervision layout (TRL's `prompt`, `completions`, `labels`) plus the
#: rest of the record, so that the mapping is lossless both ways.
STEPWISE_KEYS = ("prompt", "completions", "labels")


@dataclass
class Trajectory:
    """A question, its reasoning steps and what is known about them.

    `step_labels[i]` says whether step i is good. Exact sources (the arithmetic world,
    ProcessBench) use prefix labels: True while the solution is still error-free, False from the
    first error on. Estimated sources keep their own labels (Math-Shepherd's MC marks can turn
    `+` again after a `-`).
    `first_error` is the index of the first wrong step, -1 when every step is right and None when
    unknown. `gold_answer` is None when the source does not give one (Math-Shepherd, ProcessBench);
    it is stored without surrounding whitespace (which would change the answer's log-probability).
    Answers given as numbers are stored as strings (``7`` → ``"7"``) and must be finite.
    """

    id: str
    question: str
    steps: list[str]
    gold_answer: str | None = None
    final_answer: str | None = None
    step_labels: list[bool] | None = None
    first_error: int | None = None
    source: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        checked = _check(asdict(self), where=f"trajectory {self.id!r}")
        # Keep the normalised scalars (id and answers as strings, the gold answer stripped).
        for name in ("id", "gold_answer", "final_answer", "source"):
            setattr(self, name, checked[name])
        if self.metadata is None:
            self.metadata = {}

    @property
    def n_steps(self) -> int:
        return len(self.steps)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, record: Mapping[str, Any], where: str = "record") -> Trajectory:
        """Build a trajectory from a mapping, raising `RecordError` naming `where` and the field."""
        if not isinstance(record, Mapping):
            raise RecordError(where, "<record>", f"expected a JSON object, got {json_type(record)}")
        unknown = set(record) - _FIELDS
        if unknown:
            raise RecordError(
                where, sorted(unknown)[0], f"unknown field (known: {sorted(_FIELDS)})"
            )
        values = _check(dict(record), where)
        return cls(**values)

    def to_stepwise(self) -> dict[str, Any]:
        """The stepwise-supervision row: `prompt`, `completions`, `labels` and the other fields."""
        row = self.to_dict()
        row["prompt"] = row.pop("question")
        row["completions"] = row.pop("steps")
        row["labels"] = row.pop("step_labels")
        return row

    @classmethod
    def from_stepwise(cls, row: Mapping[str, Any], where: str = "row") -> Trajectory:
        record = dict(row)
        for new, old in zip(STEPWISE_KEYS, ("question", "steps", "step_labels"), strict=True):
            if new not in record:
                raise RecordError(where, new, "missing")
            record[old] = record.pop(new)
        return cls.from_dict(record, where)


_FIELDS = {f for f in Trajectory.__dataclass_fields__}
_REQUIRED = ("id", "question", "steps")


def _check(record: dict[str, Any], where: str) -> dict[str, Any]:
    """Validate a record's fields; return it with `id` as a string and defaults filled in."""
    for name in _REQUIRED:
        if record.get(name) is None:
            raise RecordError(where, name, "missing")
    if isinstance(record["id"], bool) or not isinstance(record["id"], str | int):
        raise RecordError(where, "id", f"must be a string or integer, got {record['id']!r}")
    record["id"] = str(record["id"])
    question = record["question"]
    if not isinstance(question, str) or not question.strip():
        raise RecordError(where, "question", "must be a non-empty string")
    _check_encodable(question, where, "question")
    steps = record["steps"]
    if not isinstance(steps, list | tuple):
        raise RecordError(where, "steps", f"must be a list of strings, got {type(steps).__name__}")
    if not steps:
        raise RecordError(where, "steps", "no steps")
    for i, step in enumerate(steps):
        if not isinstance(step, str):
            raise RecordError(where, f"steps[{i}]", f"must be a string, got {type(step).__name__}")
        if not step.strip():
            raise RecordError(where, f"steps[{i}]", "empty or whitespace-only step")
        _check_encodable(step, where, f"steps[{i}]")
    record["steps"] = list(steps)
    for name in ("gold_answer", "final_answer"):
        value = record.get(name)
        if value is not None and not isinstance(value, str):
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise RecordError(where, name, f"must be a string, got {value!r}")
            if isinstance(value, float) and not math.isfinite(value):
                raise RecordError(where, name, f"must be a finite number, got {value!r}")
            record[name] = str(value)
        if isinstance(record.get(name), str):
            _check_encodable(record[name], where, name)
    gold = record.get("gold_answer")
    if gold is not None:
        record["gold_answer"] = gold.strip()
        if not record["gold_answer"]:
            raise RecordError(where, "gold_answer", "empty or whitespace-only")
    labels = record.get("step_labels")
    if labels is not None:
        if not isinstance(labels, list | tuple):
            raise RecordError(where, "step_labels", "must be a list of booleans")
        if len(labels) != len(steps):
            raise RecordError(
                where, "step_labels", f"has {len(labels)} labels for {len(steps)} steps"
            )
        for i, label in enumerate(labels):
            if not isinstance(label, bool):
                raise RecordError(where, f"step_labels[{i}]", f"must be a boolean, got {label!r}")
        record["step_labels"] = list(labels)
    first_error = record.get("first_error")
    if first_error is not None:
        if isinstance(first_error, bool) or not isinstance(first_error, int):
            raise RecordError(
                where, "first_error", f"must be an integer or null, got {first_error!r}"
            )
        if not -1 <= first_error < len(steps):
            raise RecordError(
                where, "first_error", f"{first_error} is outside -1..{len(steps) - 1}"
            )
    source = record.get("source")
    if source is None:
        record["source"] = ""
    elif not isinstance(source, str):
        raise RecordError(where, "source", f"must be a string, got {source!r}")
    metadata = record.get("metadata")
    if metadata is None:
        record["metadata"] = {}
    elif not isinstance(metadata, Mapping):
        raise RecordError(where, "metadata", f"must be an object, got {type(metadata).__name__}")
    return record


def _check_encodable(text: str, where: str, field_name: str) -> None:
    """Text a tokenizer can encode: JSON's ``\\ud800`` escapes decode to lone surrogates (half an
    emoji in truncated LM output), which no UTF-8 tokenizer takes; refused here, as this record's
    error, instead of as a TypeError deep in a tokenizer that would stop the whole run."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise RecordError(
            where,
            field_name,
            f"not encodable text: a lone surrogate {text[exc.start]!r} at character "
            f"{exc.start + 1} (half of a character; is the text truncated?)",
        ) from None


def labels_from_first_error(n_steps: int, first_error: int) -> list[bool]:
    """Prefix-correctness labels: True before the first error, False from it on (-1: all True)."""
    if first_error == -1:
        return [True] * n_steps
    return [i < first_error for i in range(n_steps)]


def first_error_from_labels(labels: list[bool]) -> int:
    """Index of the first False label, -1 when every label is True."""
    return next((i for i, ok in enumerate(labels) if not ok), -1)


# ----------------------------------------------------------------------------------------- JSONL


def write_trajectories(path: str | os.PathLike[str], trajectories: Iterable[Trajectory]) -> int:
    """Write trajectories as JSONL (one record a line); return how many were written."""
    written = 0

    def write(tmp: Path) -> None:  # streamed: a large sample set is never one string
        nonlocal written
        with tmp.open("w", encoding="utf-8") as f:
            for t in trajectories:
                f.write(json.dumps(t.to_dict(), ensure_ascii=False) + "\n")
                written += 1

    write_atomically(path, write)  # a reader never sees half a file
    return written


def iter_trajectories(
    path: str | os.PathLike[str],
    *,
    skip_invalid: bool = False,
    errors: list[RecordError] | None = None,
) -> Iterator[Trajectory]:
    """Stream trajectories from a JSONL file.

    A malformed line raises `RecordError` ("FILE line N: field 'F': problem"; N counts from 1, as
    an editor does): not UTF-8 (field ``<encoding>``), not JSON (``<json>``, also for a key given
    twice in one object), not an object (``<record>``) or an invalid field. With
    ``skip_invalid=True`` it is skipped instead and appended to `errors` (if given); the other lines
    are read as if it were not there. Blank lines are allowed and ignored; a UTF-8 byte-order mark
    at the start of the file is ignored.
    """
    for source in read_jsonl(path):
        try:
            yield Trajectory.from_dict(source.value(), source.where)
        except RecordError as exc:
            if not skip_invalid:
                raise
            if errors is not None:
                errors.append(exc)


def read_trajectories(
    path: str | os.PathLike[str],
    *,
    skip_invalid: bool = False,
    errors: list[RecordError] | None = None,
) -> list[Trajectory]:
    """Read a JSONL file of trajectories; with `skip_invalid`, log how many were skipped and why."""
    collected: list[RecordError] = [] if errors is None else errors
    start = len(collected)
    out = list(iter_trajectories(path, skip_invalid=skip_invalid, errors=collected))
    skipped = collected[start:]
    if skipped:
        log.warning("%s: skipped %d invalid record(s): %s", path, len(skipped), summarize(skipped))
    return out


def summarize(errors: Iterable[RecordError]) -> str:
    """'3 × steps[1]: empty or whitespace-only step; 1 × question: missing' — why records failed."""
    counts = Counter((e.field.split("[")[0], e.problem) for e in errors)
    return "; ".join(f"{n} × {fld}: {problem}" for (fld, problem), n in counts.most_common())


def trajectories_from_rows(
    rows: Iterable[Mapping[str, Any]],
    *,
    where: str,
    skip_invalid: bool = False,
    errors: list[RecordError] | None = None,
) -> list[Trajectory]:
    """Validate in-memory rows (e.g. a `datasets.Dataset`), naming `where` and the row index."""
    out: list[Trajectory] = []
    for i, row in enumerate(rows):
        try:
            out.append(Trajectory.from_dict(row, f"{where} row {i}"))
        except RecordError as exc:
            if not skip_invalid:
                raise
            if errors is not None:
                errors.append(exc)
    return out
