"""The input side of a labeling run: every record of the input file (valid or not, in order),
this shard's share of them with the run's identity, and whether an output already there is this
run's and may be resumed. The guarantees are stated in `label_file`'s docstring."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from cpmi_lib.core.records import read_any
from cpmi_lib.core.trajectory import RecordError, Trajectory
from cpmi_lib.labeling.outputs import check_outputs
from cpmi_lib.labeling.runs import (
    LabelFileError,
    OutputRefused,
    RunIdentity,
    check_one_run,
    in_shard,
    scan_label_file,
    shard_block,
    torn_line_problem,
)


@dataclass
class InputItem:
    """One input record: its index, where it is, and the trajectory or why it cannot be labeled."""

    index: int
    at: str  # "FILE line N"
    traj: Trajectory | None = None
    error: RecordError | None = None
    raw_id: str | None = None

    @property
    def id(self) -> str | None:
        return self.traj.id if self.traj is not None else self.raw_id

    @property
    def line(self) -> int | None:
        m = _LINE.search(self.at)
        return int(m.group(1)) if m else None

    @property
    def where(self) -> str:
        return self.at if self.traj is None else f"{self.at}, trajectory {self.traj.id!r}"


_LINE = re.compile(r" line (\d+)$")


def read_input(path: Path, method: str) -> tuple[list[InputItem], str]:
    """Every record of the input (valid or not, in order) and the sha256 of the file's bytes.

    Records are read as `iter_trajectories` reads them, from JSON Lines, a JSON array or Parquet
    alike (`read_any`: a record is a record, not a physical line); a duplicate id (after its
    first) and a missing gold answer are errors of that record too. A read error after which the
    rest of the file cannot be located (inside a JSON array) is raised at once: skipping it would
    silently drop every record after it.
    """
    data = path.read_bytes()  # hashed and parsed from the same bytes: an edit cannot slip between
    sha = hashlib.sha256(data).hexdigest()
    items: list[InputItem] = []
    first_line: dict[str, int | None] = {}
    for source in read_any(path, data):
        if source.fatal:
            raise source.error  # type: ignore[misc]
        item = InputItem(len(items), source.where)
        items.append(item)
        try:
            item.traj = Trajectory.from_dict(source.value(), source.where)
        except RecordError as exc:
            item.error = exc
            rid = source.raw.get("id") if isinstance(source.raw, dict) else None
            if isinstance(rid, str | int) and not isinstance(rid, bool):
                item.raw_id = str(rid)
            continue
        tid = item.traj.id
        if tid in first_line:
            at = first_line[tid]
            item.error = RecordError(
                item.where, "id", f"duplicate id {tid!r}" + (f" (first at line {at})" if at else "")
            )
        elif item.traj.gold_answer is None:
            item.error = RecordError(
                item.where, "gold_answer", f"missing: {method.upper()} needs the gold answer"
            )
        first_line.setdefault(tid, item.line)
    return items, sha


def plan_run(
    input_path: Path,
    out: Path,
    method: str,
    config: dict[str, Any],
    model_name: str,
    shard: tuple[int, int],
    skip_invalid: bool,
    dtype: str | None = None,
    device: str | None = None,
    model_identity: dict[str, str] | None = None,
) -> tuple[list[InputItem], RunIdentity]:
    """Check the paths and the input of a run labeling with `method` under `config` (the
    `LabelConfig` as stored); return this shard's records and the run's identity."""
    i, n = shard
    if not 0 <= i < n:
        raise ValueError(f"shard ({i}, {n}): need 0 <= i < n")
    if not input_path.is_file():
        raise LabelFileError(f"{input_path}: no such file (the input trajectories)")
    if out.is_dir():
        raise LabelFileError(f"{out} is a directory; the output must be a file")
    check_outputs(out, [input_path])
    items, sha = read_input(input_path, method)
    if not skip_invalid:
        bad = next((it for it in items if it.error is not None), None)
        if bad is not None:
            raise bad.error  # type: ignore[misc]
    # may be empty (more shards than records): the shard file is then empty and complete, and
    # `merge_label_files` accepts it, so any split of a run can be merged
    mine = [it for it in items if in_shard(it.index, shard, shard_block(config))]
    identity = RunIdentity(
        model=model_name,
        config=config,
        dtype=dtype,
        device=device,
        shard=shard,
        input_name=input_path.name,
        input_sha256=sha,
        input_records=len(items),
        model_identity=model_identity,
    )
    return mine, identity


def check_existing(
    out: Path,
    data: bytes,
    identity: RunIdentity,
    items: list[InputItem],
    input_path: Path,
    *,
    model_content: bool = True,
) -> tuple[dict[int, dict[str, Any]], int]:
    """The records of an output being resumed, by index, and the byte length of its complete
    lines; `OutputRefused` (the output is not this run's to write) unless every line is a record
    of this run for these input records (with `model_content` False, the model's content
    identity aside: a check before the model's files are hashed)."""
    try:
        if not model_content:
            scan = scan_label_file(out, data)
            first = scan.records[0][1]["run"].get("model_identity") if scan.records else None
            identity = replace(identity, model_identity=first)
        return _existing_records(out, data, identity, items, input_path)
    except OutputRefused:
        raise
    except LabelFileError as exc:
        raise OutputRefused(str(exc)) from None


def _existing_records(
    out: Path, data: bytes, identity: RunIdentity, items: list[InputItem], input_path: Path
) -> tuple[dict[int, dict[str, Any]], int]:
    scan = scan_label_file(out, data)
    if scan.torn:
        problem = torn_line_problem(scan.torn)
        if problem is not None:
            raise LabelFileError(
                f"{out} line {len(scan.records) + 1}: not a label record ({problem})"
            )
    check_one_run(out, scan, identity)
    by_index = {it.index: it for it in items}
    done: dict[int, dict[str, Any]] = {}
    for lineno, record in scan.records:
        it = by_index.get(record["index"])
        if it is None or (record["id"] is not None and it.id is not None and record["id"] != it.id):
            raise LabelFileError(
                f"{out} line {lineno}: index {record['index']} is {record['id']!r} here but "
                f"{None if it is None else it.id!r} in {input_path}; label into a new file"
            )
        done[record["index"]] = record
    return done, scan.good_bytes
