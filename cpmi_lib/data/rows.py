"""Rows of a data set, local or on the Hugging Face Hub, read lazily and validated one by one.

Every loader (`loaders`) reads through `iter_rows`, so a Hugging Face dataset id and a local copy in
the same schema (JSON/JSONL/Parquet file, or a directory such as a downloaded snapshot) go down one
code path, and every row is validated: a malformed row raises `RecordError` naming the file, the
line (1-based, as an editor shows it; ``row i``, 0-based, for Parquet files and Hub rows) and the
field, or with ``skip_invalid=True`` is skipped alone, logged and appended to `errors`
(`convert_rows`). `limit` caps the number of trajectories returned (the first ones in source
order; reading stops there).

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
import tempfile
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import datasets
from huggingface_hub.errors import HfHubHTTPError

from cpmi_lib.core.records import SUFFIXES, SourceRecord, json_type, read_records
from cpmi_lib.core.trajectory import RecordError, Trajectory, summarize

log = logging.getLogger(__name__)

#: Turns one source row into trajectories: (row, row index, where) -> trajectories. It builds
#: them with `Trajectory.from_dict` so that the validation names `where` (plus anything it adds).
RowConverter = Callable[[Mapping[str, Any], int, str], list[Trajectory]]


class DatasetUnavailableError(RuntimeError):
    """A Hub dataset could not be fetched: the machine is offline or the id is unknown."""


class UnknownSplitError(ValueError):
    """A local snapshot directory has no such split (for the requested config)."""


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
        out.append(row_object(record))
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


def split_name(source: str | os.PathLike[str], split: str) -> str:
    """The split a source holds: a local file is its own split, named by its stem."""
    path = Path(source)
    return path.stem if path.is_file() else split


def where_of(source: str | os.PathLike[str], split: str) -> str:
    return str(source) if Path(source).is_file() else f"{source} [{split}]"


def row_object(record: SourceRecord) -> Mapping[str, Any]:
    """The record's value, which must be a JSON object (a row)."""
    row = record.value()
    if not isinstance(row, Mapping):
        raise RecordError(record.where, "<record>", f"expected a JSON object, got {json_type(row)}")
    return row


def convert_rows(
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
            out.extend(convert(row_object(record), i, record.where))
        except RecordError as exc:
            if not skip_invalid or record.fatal:
                raise
            skipped.append(exc)
    if skipped:
        log.warning("%s: skipped %d invalid row(s): %s", where, len(skipped), summarize(skipped))
        if errors is not None:
            errors.extend(skipped)
    return out if limit is None else out[:limit]


def required_field(
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


def optional_field(row: Mapping[str, Any], name: str, kinds: tuple[type, ...], where: str) -> Any:
    """`row[name]` when present and not null, which must then be of one of `kinds`."""
    value = row.get(name)
    if value is None:
        return None
    if not isinstance(value, kinds) or (bool not in kinds and isinstance(value, bool)):
        expected = " or ".join(k.__name__ for k in kinds)
        raise RecordError(where, name, f"must be {expected}, got {type(value).__name__}")
    return value
