"""What a labeling run leaves behind, read back: the labeled records of a label file in file order
(`read_labels`), what they cost, a skipped record in words, and the shard files of one run merged
into one file in input order (`merge_label_files`)."""

from __future__ import annotations

import fcntl
import os
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from cpmi_lib.core.costs import Costs
from cpmi_lib.labeling.outputs import check_outputs
from cpmi_lib.labeling.runs import (
    LabelFileError,
    LabelFileScan,
    OutputRefused,
    RunIdentity,
    check_one_run,
    dumps_record,
    loads_strict,
    lock_file,
    locked_output,
    scan_label_file,
    shard_block,
    shard_indices,
    shard_text,
    torn_line_problem,
)


def describe_skip(s: dict[str, Any]) -> str:
    """One skipped record as "line 3 (index 2, id 'x'): field 'gold_answer': missing: …"."""
    at = f"line {s['line']} (index {s['index']}, " if s.get("line") else f"index {s['index']} ("
    return f"{at}id {s['id']!r}): field '{s['field']}': {s['problem']}"


def iter_label_lines(path: str | os.PathLike[str]) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, object) of every non-blank line; LabelFileError names a line that is not
    JSON (or holds NaN/Infinity)."""
    with Path(path).open("rb") as f:
        for lineno, raw in enumerate(f, start=1):
            if not raw.strip():
                continue
            try:
                yield lineno, loads_strict(raw)
            except (ValueError, UnicodeDecodeError) as exc:
                raise LabelFileError(f"{path} line {lineno}: not a label record ({exc})") from None


def read_labels(path: str | os.PathLike[str], *, skipped: bool = False) -> list[dict[str, Any]]:
    """The labeled records of a label file in file order; skipped records too with `skipped`."""
    return [r for _, r in iter_label_lines(path) if skipped or "skipped" not in r]


def total_costs(records: list[dict[str, Any]]) -> Costs:
    total = Costs()
    for r in records:
        if "skipped" not in r:
            total = total + Costs.from_dict(r["costs"])
    return total


def merge_label_files(
    shard_paths: Sequence[str | os.PathLike[str]], out_path: str | os.PathLike[str]
) -> int:
    """Join the shard files of one run into `out_path` in input order; return the record count.

    Refused with LabelFileError naming the file (and line): a line that is not a label record
    (a torn last line included: finish that shard with --resume first), a shard being written,
    two files of the same shard, shards of another input, model, config, dtype or device, a
    missing shard of 0..n-1, and a shard that lacks some of its indices. An empty file is a
    complete shard exactly when its shard has no record (more shards than records), so every
    split merges. Skipped records (see `cpmi_lib.labeling.label_file`) count as present and are
    kept. The merged lines are those of a single 0/1 run (``run.shard`` is rewritten), so a merged
    file can be resumed or merged again.

    The output is only written if it is no input, not held by another process and either absent,
    empty or a label file of this same run (`OutputRefused` otherwise; see
    `cpmi_lib.labeling.outputs`); it is locked as `label` locks it while the merge runs, and
    replaced at once from a temporary file of a fresh name, so it is never partly written.
    """
    paths = [Path(p) for p in shard_paths]
    out = Path(out_path)
    if not paths:
        raise LabelFileError("no shard files to merge")
    check_outputs(out, paths, "also a shard file")
    scans = [_read_shard(p) for p in paths]
    reference, records = _check_shards(scans)
    with locked_output(out, resume=True) as (f, _created):
        existing = f.read()
        if existing:
            _check_overwrite(out, existing, reference)
        tmp = _fresh_tmp(out)
        try:
            with tmp.open("wb") as t:
                for r in records:
                    t.write(dumps_record({**r, "run": {**r["run"], "shard": [0, 1]}}))
            tmp.replace(out)
        except BaseException as exc:
            tmp.unlink(missing_ok=True)
            if isinstance(exc, OSError) and exc.filename is None:  # a refused write: name it
                raise OSError(exc.errno, exc.strerror, str(out)) from None
            raise
    return len(records)


def _read_shard(p: Path) -> tuple[Path, LabelFileScan]:
    with p.open("rb") as f:
        lock_file(f, p, fcntl.LOCK_SH)
        scan = scan_label_file(p, f.read())
    if scan.torn:
        raise LabelFileError(
            f"{p} line {len(scan.records) + 1}: torn last line (the run was interrupted); "
            "finish this shard with --resume before merging"
        )
    return p, scan


def _check_shards(
    scans: list[tuple[Path, LabelFileScan]],
) -> tuple[RunIdentity, list[dict[str, Any]]]:
    """The run the shards are of and all their records in input order, or LabelFileError."""
    by_shard: dict[int, Path] = {}
    reference: RunIdentity | None = None
    reference_path: Path | None = None
    records: list[dict[str, Any]] = []
    empty = [p for p, scan in scans if not scan.records]
    for p, scan in scans:
        ident = check_one_run(p, scan, None)
        if ident is None:
            continue
        if reference is None:
            reference, reference_path = ident, p
        else:
            diff = ident.difference(reference, shard=False, other_name=str(reference_path))
            if diff is not None:
                why = "shards of different inputs" if diff[0] == "input" else "different runs"
                raise LabelFileError(f"{p} {diff[1]}: {why} do not merge")
            if ident.shard[1] != reference.shard[1]:
                raise LabelFileError(
                    f"{p} is shard {shard_text(ident.shard)} but {reference_path} is shard "
                    f"{shard_text(reference.shard)}: shards of different splits do not merge"
                )
        i, n = ident.shard
        if i in by_shard:
            raise LabelFileError(
                f"{p} and {by_shard[i]} are both shard {i}/{n}: their trajectories would be in "
                "two shards"
            )
        by_shard[i] = p
        present = {r["index"] for _, r in scan.records}
        owned = shard_indices(ident.shard, ident.input_records, shard_block(ident.config))
        missing = [j for j in owned if j not in present]
        if missing:
            raise LabelFileError(
                f"{p}: shard {i}/{n} is incomplete: {len(missing)} of its "
                f"{len(owned)} trajectories are missing (first: index "
                f"{missing[0]}); finish it with --resume before merging"
            )
        records += [r for _, r in scan.records]
    if reference is None:
        raise LabelFileError(
            f"{empty[0]}: no label records in any shard file given (nothing labeled yet?)"
        )
    n = reference.shard[1]
    absent = [i for i in range(n) if i not in by_shard]
    # an empty file stands for a shard with no record to label, and only for one
    block = shard_block(reference.config)
    owed = [i for i in absent if shard_indices((i, n), reference.input_records, block)]
    if owed or len(empty) != len(absent):
        names = ", ".join(f"{i}/{n}" for i in (owed or absent))
        extra = (
            f", and {len(empty)} empty file(s), which stand only for shards with no record"
            if empty
            else ""
        )
        if not owed and len(empty) > len(absent):
            raise LabelFileError(
                f"{len(empty)} empty file(s) given but only {len(absent)} shard(s) of "
                f"{reference.input_name} have no record: some file is not a shard of this run"
            )
        raise LabelFileError(
            f"missing shard(s) {names} of {reference.input_name} "
            f"({len(by_shard)} of {n} given{extra})"
        )
    records.sort(key=lambda r: r["index"])
    return reference, records


def _check_overwrite(out: Path, data: bytes, reference: RunIdentity) -> None:
    """Refuse to replace an existing output unless it is a label file of this same run."""
    try:
        scan = scan_label_file(out, data)
        if scan.torn and torn_line_problem(scan.torn):
            raise LabelFileError(f"{out} line {len(scan.records) + 1}: a torn line")
        ident = check_one_run(out, scan, None)
    except LabelFileError as exc:
        raise OutputRefused(
            f"{out} exists and is not a label file ({exc}); merge into a new file"
        ) from None
    diff = (
        None if ident is None else ident.difference(reference, shard=False, other_name="this merge")
    )
    if diff is not None:
        raise OutputRefused(
            f"{out} exists and holds the labels of another run (it {diff[1]}); merge into a new "
            "file"
        )


def _fresh_tmp(out: Path) -> Path:
    """A new, empty temporary file beside `out` whose name no other file has."""
    fd, name = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".merging", dir=out.parent)
    os.close(fd)
    return Path(name)
