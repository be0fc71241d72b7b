"""What a labeling run leaves behind, read back: the labeled records of a label file in file order
(`read_labels`), what they cost, a skipped record in words, and the shard files of one run merged
into one file in input order (`merge_label_files`)."""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from cpmi_lib.core.costs import Costs
from cpmi_lib.labeling.runs import (
    LabelFileError,
    RunIdentity,
    check_one_run,
    dumps_record,
    loads_strict,
    lock_file,
    scan_label_file,
    shard_text,
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
    missing shard of 0..n-1, and a shard that lacks some of its indices. Skipped records (see
    `cpmi_lib.labeling.label_file`) count as present and are kept. The merged lines are those of a
    single
    0/1 run (``run.shard`` is rewritten), so a merged file can be resumed or merged again.
    """
    paths = [Path(p) for p in shard_paths]
    out = Path(out_path)
    if not paths:
        raise LabelFileError("no shard files to merge")
    for p in paths:
        if out.exists() and p.exists() and os.path.samefile(out, p):
            raise LabelFileError(f"the merged output {out} is also a shard file; write a new file")
    by_shard: dict[int, Path] = {}
    reference: RunIdentity | None = None
    reference_path: Path | None = None
    records: list[dict[str, Any]] = []
    for p in paths:
        with p.open("rb") as f:
            lock_file(f, p, fcntl.LOCK_SH)
            scan = scan_label_file(p, f.read())
        if scan.torn:
            raise LabelFileError(
                f"{p} line {len(scan.records) + 1}: torn last line (the run was interrupted); "
                "finish this shard with --resume before merging"
            )
        ident = check_one_run(p, scan, None)
        if ident is None:
            raise LabelFileError(f"{p}: no label records (nothing labeled yet?)")
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
        missing = [j for j in range(i, ident.input_records, n) if j not in present]
        if missing:
            raise LabelFileError(
                f"{p}: shard {i}/{n} is incomplete: {len(missing)} of its "
                f"{len(range(i, ident.input_records, n))} trajectories are missing (first: index "
                f"{missing[0]}); finish it with --resume before merging"
            )
        records += [r for _, r in scan.records]
    assert reference is not None
    n = reference.shard[1]
    absent = [f"{i}/{n}" for i in range(n) if i not in by_shard]
    if absent:
        raise LabelFileError(
            f"missing shard(s) {', '.join(absent)} of {reference.input_name} "
            f"({len(by_shard)} of {n} given)"
        )
    records.sort(key=lambda r: r["index"])
    tmp = out.with_name(out.name + ".tmp")
    with tmp.open("wb") as f:
        for r in records:
            f.write(dumps_record({**r, "run": {**r["run"], "shard": [0, 1]}}))
    tmp.replace(out)
    return len(records)
