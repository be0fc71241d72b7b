"""Public data sets (GSM8K, its model solutions, Math-Shepherd, ProcessBench) as `Trajectory` lists.

Every loader reads through `iter_rows`, so a Hugging Face dataset id and a local copy in the same
schema (JSON/JSONL/Parquet file, or a directory such as a downloaded snapshot) go down one code
path, and every row is validated: a malformed row raises `RecordError` naming the file, the line
(1-based, as an editor shows it; ``row i``, 0-based, for Parquet files and Hub rows) and the field,
or with ``skip_invalid=True`` is skipped alone, logged and appended to `errors`. `limit` caps the
number of trajectories returned (the first ones in source order; reading stops there).

Local files are read by `cpmi_lib.core.records`, never through `datasets.load_dataset`, for two
reasons:

- `datasets` caches a local snapshot directory under its folder name and card, not its path or
  content, so a second directory with the same name, or the same one regenerated in place, would
  silently load the rows of the first. Here local files are read from disk on every call.
- Its json builder gives each column one type across all rows before any check runs: one float
  label rejected every row, one non-string step turned the number-like string steps of every
  other row into numbers, and one bad line failed the whole file with no line number. Here each
  row keeps the JSON types it was written with and is judged alone.

A local directory resolves `config` and `split` to files exactly as the Hub would (README
``configs:`` card, else split-named files such as ``test.jsonl``), by `datasets`' own resolution
(`datasets.load_dataset_builder`, given a throwaway cache so that no user cache is read or
written, and which reads no rows); those files are then read here, in order. Hub ids still go
through `datasets.load_dataset` (their rows are typed Parquet).
"""

from __future__ import annotations

import logging
import os
import re
import tempfile
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import datasets
from huggingface_hub.errors import HfHubHTTPError

from cpmi_lib.core.answers import extract_final_answer
from cpmi_lib.core.paths import SHARED
from cpmi_lib.core.records import SUFFIXES, SourceRecord, json_type, read_records
from cpmi_lib.core.trajectory import (
    RecordError,
    Trajectory,
    first_error_from_labels,
    labels_from_first_error,
    summarize,
)

log = logging.getLogger(__name__)

#: Turns one source row into trajectories: (row, row index, where) -> trajectories. It builds
#: them with `Trajectory.from_dict` so that the validation names `where` (plus anything it adds).
RowConverter = Callable[[Mapping[str, Any], int, str], list[Trajectory]]


class DatasetUnavailableError(RuntimeError):
    """A Hub dataset could not be fetched: the machine is offline or the id is unknown."""


class UnknownSplitError(ValueError):
    """A local snapshot directory has no such split (for the requested config)."""


# ------------------------------------------------------------------------------------------ rows


def iter_rows(
    source: str | os.PathLike[str], *, split: str = "train", config: str | None = None
) -> Iterator[SourceRecord]:
    """The rows of a local file/directory or of a Hugging Face dataset, lazily, each with where
    it is (``FILE line N``, ``FILE row i`` or ``ID [split] row i``).

    A local file (``.json``, ``.jsonl``, ``.parquet``) is one split, so `split` and `config` are
    ignored; its rows are read as written (see `cpmi_lib.core.records`). A local directory resolves
    `config` and `split` to files as the Hub would (`local_split_files`). Anything else is a Hub
    id, loaded by `datasets.load_dataset`; when it cannot be fetched a `DatasetUnavailableError`
    says so and suggests a local path. A row that cannot be read carries its `RecordError`,
    raised by `SourceRecord.value`.
    """
    path = Path(source)
    if path.is_file():
        return read_records(path)
    if path.is_dir():
        files = local_split_files(path, split=split, config=config)
        return (record for file in files for record in read_records(file))
    name = str(source)
    if path.is_absolute() or name.startswith(".") or path.suffix.lower() in SUFFIXES:
        raise FileNotFoundError(f"{name}: no such file or directory")
    rows = _load_hub(name, split=split, config=config)
    return (SourceRecord(f"{name} [{split}] row {i}", row) for i, row in enumerate(rows))


def load_rows(
    source: str | os.PathLike[str], *, split: str = "train", config: str | None = None
) -> list[dict[str, Any]]:
    """All rows of `source` (see `iter_rows`) as written; raises `RecordError` at the first row
    that cannot be read or is not an object."""
    out = []
    for record in iter_rows(source, split=split, config=config):
        out.append(_object(record))
    return out


def local_split_files(
    directory: str | os.PathLike[str], *, split: str, config: str | None = None
) -> list[Path]:
    """The files of `split` (of `config`) in a local snapshot directory, as the Hub resolves them:
    the ``configs:`` card of its README (``data_files`` per split), else split-named files.

    Resolved afresh from the directory's current contents on every call; `datasets` is given a
    throwaway cache directory, so that no cache is read or written, and builds no rows.
    An unknown split raises `UnknownSplitError` naming the directory and the available splits.
    """
    directory = Path(directory)
    with tempfile.TemporaryDirectory(prefix="cpmi-resolve-") as cache:
        try:
            builder = datasets.load_dataset_builder(str(directory), config, cache_dir=cache)
        except ValueError as exc:  # "BuilderConfig 'x' not found", "Config name is missing"
            raise ValueError(f"{directory}: {exc}") from exc
        data_files = {str(name): list(files) for name, files in builder.config.data_files.items()}
    if split not in data_files:
        raise UnknownSplitError(
            f"{directory}: Unknown split {split!r} (config {builder.config.name!r}); available "
            f"splits: {', '.join(sorted(data_files)) or 'none'}"
        )
    return [Path(file) for file in data_files[split]]


def _load_hub(name: str, *, split: str, config: str | None) -> datasets.Dataset:
    try:
        return datasets.load_dataset(name, config, split=split)
    except (
        ConnectionError,  # datasets' "Couldn't reach ... on the Hub", OfflineModeIsEnabled
        TimeoutError,
        FileNotFoundError,  # includes datasets' DatasetNotFoundError
        HfHubHTTPError,  # 401/403/404 and other HTTP failures
    ) as exc:
        raise DatasetUnavailableError(
            f"Cannot load Hugging Face dataset {name!r} (config={config!r}, split={split!r}): "
            f"this machine is offline (or HF_HUB_OFFLINE/HF_DATASETS_OFFLINE is set) and the "
            f"dataset is not cached, or the id is unknown. Pass a local path instead: a JSON, "
            f"JSONL or Parquet file (or a directory of them) in the same schema. "
            f"[{type(exc).__name__}: {exc}]"
        ) from exc


def _split_name(source: str | os.PathLike[str], split: str) -> str:
    """The split a source holds: a local file is its own split, named by its stem."""
    path = Path(source)
    return path.stem if path.is_file() else split


def _where(source: str | os.PathLike[str], split: str) -> str:
    return str(source) if Path(source).is_file() else f"{source} [{split}]"


def _object(record: SourceRecord) -> Mapping[str, Any]:
    """The record's value, which must be a JSON object (a row)."""
    row = record.value()
    if not isinstance(row, Mapping):
        raise RecordError(record.where, "<record>", f"expected a JSON object, got {json_type(row)}")
    return row


def _convert(
    rows: Iterable[SourceRecord],
    convert: RowConverter,
    *,
    where: str,
    skip_invalid: bool,
    errors: list[RecordError] | None,
    limit: int | None,
) -> list[Trajectory]:
    """Convert and validate rows, at most `limit` trajectories; a row that fails anywhere is
    raised, or skipped as a whole. A row's index `i` (for ids) counts every record of the source,
    read or not, so that skipping a bad row changes no other row's id."""
    out: list[Trajectory] = []
    skipped: list[RecordError] = []
    for i, record in enumerate(rows):
        if limit is not None and len(out) >= limit:
            break
        try:
            out.extend(convert(_object(record), i, record.where))
        except RecordError as exc:
            if not skip_invalid or record.fatal:
                raise
            skipped.append(exc)
    if skipped:
        log.warning("%s: skipped %d invalid row(s): %s", where, len(skipped), summarize(skipped))
        if errors is not None:
            errors.extend(skipped)
    return out if limit is None else out[:limit]


def _required(
    row: Mapping[str, Any], name: str, kind: type, where: str, *, parent: str = ""
) -> Any:
    """`row[name]`, which must be present and of `kind` (bool is not an int here).

    `parent` names the enclosing field of a nested row (errors then say ``6b_finetuning.solution``).
    """
    value = row.get(name)
    field_name = f"{parent}.{name}" if parent else name
    if value is None:
        raise RecordError(where, field_name, "missing")
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise RecordError(where, field_name, f"must be {kind.__name__}, got {type(value).__name__}")
    return value


def _optional(row: Mapping[str, Any], name: str, kinds: tuple[type, ...], where: str) -> Any:
    """`row[name]` when present and not null, which must then be of one of `kinds`."""
    value = row.get(name)
    if value is None:
        return None
    if not isinstance(value, kinds) or (bool not in kinds and isinstance(value, bool)):
        expected = " or ".join(k.__name__ for k in kinds)
        raise RecordError(where, name, f"must be {expected}, got {type(value).__name__}")
    return value


# ----------------------------------------------------------------------------------------- GSM8K

#: The real GSM8K files (problems, and 4 labelled model solutions per test problem):
#: ``$CPMI_GSM8K_DIR``, else ``../shared/data/gsm8k`` beside the checkout (read-only; never copied
#: into the repository).
GSM8K_DIR = Path(os.environ.get("CPMI_GSM8K_DIR", SHARED / "data" / "gsm8k"))


_CALCULATOR = re.compile(r"<<.*?>>")
_ANSWER_LINE = re.compile(r"^[ \t]*A:", re.MULTILINE)


def _lines(text: str, keep_calculator: bool) -> list[str]:
    """Non-blank lines, stripped, with GSM8K calculator annotations ``<<expr=value>>`` removed."""
    if not keep_calculator:
        text = _CALCULATOR.sub("", text)
    return [line.strip() for line in text.split("\n") if line.strip()]


def _gsm8k_number(answer: str) -> str:
    """A GSM8K final answer without thousands separators (``1,000`` → ``1000``)."""
    return answer.replace(",", "").strip()


def load_gsm8k_problems(
    source: str | os.PathLike[str] = "openai/gsm8k",
    *,
    split: str = "test",
    config: str | None = "main",
    keep_calculator: bool = False,
    skip_invalid: bool = False,
    errors: list[RecordError] | None = None,
    limit: int | None = None,
) -> list[Trajectory]:
    """GSM8K reference solutions: the lines before ``#### answer`` are the (all correct) steps.

    Ids are ``gsm8k-{split}-{row}``, where a local file's split is its stem (``test.jsonl`` → test).
    """
    split = _split_name(source, split)

    def convert(row: Mapping[str, Any], i: int, where: str) -> list[Trajectory]:
        question = _required(row, "question", str, where)
        answer = _required(row, "answer", str, where)
        solution, marker, final = answer.rpartition("####")
        if not marker:
            raise RecordError(where, "answer", "no '#### <final answer>' line")
        gold = _gsm8k_number(final)
        if not gold:
            raise RecordError(where, "answer", "nothing after '####'")
        steps = _lines(solution, keep_calculator)
        record = {
            "id": f"gsm8k-{split}-{i}",
            "question": question,
            "steps": steps,
            "gold_answer": gold,
            "final_answer": gold,
            "step_labels": [True] * len(steps),
            "first_error": -1,
            "source": "gsm8k",
        }
        return [Trajectory.from_dict(record, where)]

    return _convert(
        iter_rows(source, split=split, config=config),
        convert,
        where=_where(source, split),
        skip_invalid=skip_invalid,
        errors=errors,
        limit=limit,
    )


#: The four solutions per question in GSM8K's `example_model_solutions.jsonl`.
GSM8K_SOLUTION_KEYS = ("6b_finetuning", "6b_verification", "175b_finetuning", "175b_verification")


def load_gsm8k_model_solutions(
    source: str | os.PathLike[str],
    *,
    keep_calculator: bool = False,
    skip_invalid: bool = False,
    errors: list[RecordError] | None = None,
    limit: int | None = None,
) -> list[Trajectory]:
    """GPT-3 solutions to the GSM8K test questions, four per question, right and wrong.

    Steps are the lines before the last ``A: x`` line (all lines when a truncated solution has
    none, in which case `final_answer` is None). Step correctness is unknown (`step_labels` and
    `first_error` are None); the solution's overall flag is `metadata["is_correct"]`. A row that
    fails validation is skipped as a whole (all four solutions).
    """

    def convert(row: Mapping[str, Any], i: int, where: str) -> list[Trajectory]:
        question = _required(row, "question", str, where)
        ground_truth = _required(row, "ground_truth", str, where)
        gold = extract_final_answer(ground_truth)
        if gold is None:
            raise RecordError(where, "ground_truth", "no 'A: <final answer>' line")
        records = []
        for key in GSM8K_SOLUTION_KEYS:
            entry = _required(row, key, Mapping, where)
            solution = _required(entry, "solution", str, where, parent=key)
            is_correct = _required(entry, "is_correct", bool, where, parent=key)
            answer_lines = list(_ANSWER_LINE.finditer(solution))
            body = solution[: answer_lines[-1].start()] if answer_lines else solution
            record = {
                "id": f"gsm8k-sol-{i}-{key}",
                "question": question,
                "steps": _lines(body, keep_calculator),
                "gold_answer": _gsm8k_number(gold),
                "final_answer": extract_final_answer(solution),
                "step_labels": None,
                "first_error": None,
                "source": "gsm8k",
                "metadata": {"model": key, "is_correct": is_correct},
            }
            records.append(Trajectory.from_dict(record, f"{where} ({key})"))
        return records

    return _convert(
        iter_rows(source),
        convert,
        where=_where(source, "train"),
        skip_invalid=skip_invalid,
        errors=errors,
        limit=limit,
    )


# ---------------------------------------------------------------------------------- Math-Shepherd

#: Math-Shepherd ends every step of `input` with this tag; `label` has '+' or '-' in its place.
STEP_TAG = "ки"
_FIRST_STEP = re.compile(r"step\s*1\s*:", re.IGNORECASE)
_STEP_PREFIX = re.compile(r"^\s*step\s*\d+\s*:\s*", re.IGNORECASE)


def load_math_shepherd(
    source: str | os.PathLike[str] = "peiyi9979/Math-Shepherd",
    *,
    split: str = "train",
    config: str | None = None,
    skip_invalid: bool = False,
    errors: list[RecordError] | None = None,
    limit: int | None = None,
) -> list[Trajectory]:
    """Math-Shepherd's automatically labelled solutions (GSM8K and MATH questions).

    The question is the text of `input` before its first ``Step 1:``; each step ends at a ``ки``
    tag and its label is the ``+``/``-`` at the tag's position in `label`. The ``Step k:`` prefix
    is stripped from each step, so that steps have the form of our own (one a line, unnumbered,
    see `cpmi_lib.core.text_format`); the last step keeps its ``The answer is: x``. Labels are the
    source's as given: a ``+`` may follow a ``-`` (a later step from which the right answer was
    still reached), and `first_error` is the first ``-``. Math-Shepherd gives no gold answer;
    `gold_answer` is the solution's final answer when its last step is labelled ``+`` (then the
    solution reached the gold answer), else None.

    Rows where a tag stands before ``Step 1:`` (a known annotation slip in the public data) or
    text follows the last tag raise `RecordError` on `input`; with ``skip_invalid`` they are
    skipped and counted.
    """
    split = _split_name(source, split)

    def convert(row: Mapping[str, Any], i: int, where: str) -> list[Trajectory]:
        text = _required(row, "input", str, where)
        label = _required(row, "label", str, where)
        pieces = text.split(STEP_TAG)
        n_tags = len(pieces) - 1
        if n_tags == 0:
            raise RecordError(where, "input", f"no step tag {STEP_TAG!r}")
        if len(label) != len(text) - n_tags * (len(STEP_TAG) - 1):
            raise RecordError(
                where,
                "label",
                f"is not `input` with its {n_tags} {STEP_TAG!r} tags replaced by '+'/'-' "
                f"(length {len(label)}, expected {len(text) - n_tags * (len(STEP_TAG) - 1)})",
            )
        marks, position = [], 0
        for k, piece in enumerate(pieces[:-1]):
            position += len(piece)
            mark = label[position]
            if mark not in "+-":
                raise RecordError(
                    where, "label", f"expected '+' or '-' at step tag {k + 1}, found {mark!r}"
                )
            marks.append(mark)
            position += 1
        first = _FIRST_STEP.search(pieces[0])
        if first is None:
            if _FIRST_STEP.search(text):
                raise RecordError(where, "input", "a step tag stands before 'Step 1:'")
            raise RecordError(where, "input", "no 'Step 1:' marks the first step")
        if pieces[-1].strip():
            raise RecordError(where, "input", f"text after the last step tag: {pieces[-1]!r}")
        raw_steps = [pieces[0][first.start() :], *pieces[1:-1]]
        steps = [_STEP_PREFIX.sub("", step).strip() for step in raw_steps]
        for k, step in enumerate(steps):
            if not step:
                raise RecordError(where, "input", f"step {k + 1} is empty")
        question = pieces[0][: first.start()].strip()
        if not question:
            raise RecordError(where, "input", "no question before 'Step 1:'")
        labels = [mark == "+" for mark in marks]
        final = extract_final_answer(steps[-1])
        record = {
            "id": f"math-shepherd-{split}-{i}",
            "question": question,
            "steps": steps,
            "gold_answer": final if labels[-1] else None,
            "final_answer": final,
            "step_labels": labels,
            "first_error": first_error_from_labels(labels),
            "source": "math-shepherd",
            "metadata": {"task": row.get("task")},
        }
        return [Trajectory.from_dict(record, where)]

    return _convert(
        iter_rows(source, split=split, config=config),
        convert,
        where=_where(source, split),
        skip_invalid=skip_invalid,
        errors=errors,
        limit=limit,
    )


# ----------------------------------------------------------------------------------- ProcessBench


def load_processbench(
    source: str | os.PathLike[str] = "Qwen/ProcessBench",
    *,
    split: str = "gsm8k",
    config: str | None = None,
    skip_invalid: bool = False,
    errors: list[RecordError] | None = None,
    limit: int | None = None,
) -> list[Trajectory]:
    """ProcessBench's human-labelled solutions; the subsets (gsm8k, math, olympiadbench, omnimath)
    are splits, and a local file's stem names its subset.

    `label` is the index of the first wrong step (-1: none), so `step_labels` are True before it
    and False from it on. ProcessBench gives no gold answer; `final_answer` is the one stated in
    the last step (usually ``\\boxed{x}``), and whether it is right is
    `metadata["final_answer_correct"]`.
    """
    split = _split_name(source, split)

    def convert(row: Mapping[str, Any], i: int, where: str) -> list[Trajectory]:
        problem = _required(row, "problem", str, where)
        steps = _required(row, "steps", list, where)
        if not steps:
            raise RecordError(where, "steps", "no steps")
        first_error = _required(row, "label", int, where)
        if not -1 <= first_error < len(steps):
            raise RecordError(
                where,
                "label",
                f"{first_error} is outside -1..{len(steps) - 1} ({len(steps)} steps)",
            )
        last = steps[-1] if steps and isinstance(steps[-1], str) else ""
        row_id = _optional(row, "id", (str, int), where) or f"{split}-{i}"
        generator = _optional(row, "generator", (str,), where)
        final_answer_correct = _optional(row, "final_answer_correct", (bool,), where)
        record = {
            "id": f"processbench-{row_id}",
            "question": problem,
            "steps": steps,
            "gold_answer": None,
            "final_answer": extract_final_answer(last),
            "step_labels": labels_from_first_error(len(steps), first_error),
            "first_error": first_error,
            "source": "processbench",
            "metadata": {
                "subset": split,
                "generator": generator,
                "final_answer_correct": final_answer_correct,
            },
        }
        return [Trajectory.from_dict(record, where)]

    return _convert(
        iter_rows(source, split=split, config=config),
        convert,
        where=_where(source, split),
        skip_invalid=skip_invalid,
        errors=errors,
        limit=limit,
    )
