"""Which run wrote a label file, and proving that a file is one run: identity, lock, checks.

The guarantees themselves are stated in `cpmi_lib.labeling.label_file`'s docstring; this module
holds the machinery: the run identity carried by every output line, the exclusive lock of a file
being written, and the strict reader that recognises a label file line by line
(`label_results.merge_label_files` relies on it to join shards).
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from cpmi_lib.core.records import json_type

#: Version of the label-file format; 2 added the `run` identity and skipped-record lines, 3 the
#: model's content identity (``run.model_identity``). Caches keyed on it (the experiments' label
#: folders) do not try to resume files of another.
LABEL_FORMAT = 3
#: How every output line starts (``json.dumps`` keeps insertion order and the index comes first);
#: a torn last line is only cut off on resume if it starts like this.
RECORD_START = b'{"index": '
_RUN_KEYS = ("dtype", "device", "shard", "input", "input_sha256", "input_records")


class LabelFileError(ValueError):
    """A label file that cannot be resumed, merged or read as one run; says which file and line."""


class OutputRefused(LabelFileError):
    """An output a command must not write (an input, someone else's file, another run's labels,
    or held by another process); nothing was written. See `cpmi_lib.labeling.outputs`."""


@dataclass(frozen=True)
class RunIdentity:
    """Everything that decides a run's labels, and which input (and shard of it) they cover.

    `dtype` and `device` are None before the model is loaded (a check then skips them).
    """

    model: str
    config: dict[str, Any]
    dtype: str | None
    device: str | None
    shard: tuple[int, int]
    input_name: str
    input_sha256: str
    input_records: int
    #: the model's and tokenizer's content (`cpmi_lib.lm.identity`), so one file is one model
    #: even when other weights come to sit behind the same name; None in files before format 3
    model_identity: dict[str, str] | None = None

    def run_dict(self) -> dict[str, Any]:
        """The ``run`` object of an output line."""
        return {
            "model_identity": self.model_identity,
            "dtype": self.dtype,
            "device": self.device,
            "shard": list(self.shard),
            "input": self.input_name,
            "input_sha256": self.input_sha256,
            "input_records": self.input_records,
        }

    def stamp(self) -> dict[str, Any]:
        """The identity fields of an output line (after its labels, before its costs)."""
        return {"model": self.model, "config": self.config, "run": self.run_dict()}

    @classmethod
    def of_record(cls, record: dict[str, Any]) -> RunIdentity:
        """The identity of a line that `check_record` accepted."""
        run = record["run"]
        return cls(
            model=record["model"],
            config=record["config"],
            dtype=run["dtype"],
            device=run["device"],
            shard=(run["shard"][0], run["shard"][1]),
            input_name=run["input"],
            input_sha256=run["input_sha256"],
            input_records=run["input_records"],
            model_identity=run.get("model_identity"),
        )

    def difference(
        self, other: RunIdentity, *, shard: bool = True, other_name: str = "this run"
    ) -> tuple[str, str] | None:
        """Which field a file line of identity `self` differs from `other` in, and how, e.g.
        ("dtype", "was labeled with dtype bfloat16, this run uses float32"); None: the same run.

        The input's name is not compared (a renamed copy holds the same trajectories), its
        content hash is.
        """
        if self.model != other.model:
            return "model", (
                f"was labeled with model {self.model!r}, {other_name} uses {other.model!r}"
            )
        if self.config != other.config:
            where, a, b = _first_difference(self.config, other.config)
            return "config", (
                f"was labeled with another config ({where} {json.dumps(a)}, {other_name} uses "
                f"{json.dumps(b)})"
            )
        for name in ("dtype", "device"):
            a, b = getattr(self, name), getattr(other, name)
            if a is not None and b is not None and a != b:
                return name, f"was labeled with {name} {a}, {other_name} uses {b}"
        # after dtype: the content of weights in memory (`loaded_identity`) changes with it
        if self.model_identity != other.model_identity:
            return "model", (
                f"was labeled with model {self.model} of content "
                f"{_identity_text(self.model_identity)}, {other_name} uses {other.model} of "
                f"content {_identity_text(other.model_identity)}: another model's weights"
            )
        if shard and self.shard != other.shard:
            return "shard", (
                f"was labeled as shard {shard_text(self.shard)}, {other_name} is shard "
                f"{shard_text(other.shard)}"
            )
        if (self.input_sha256, self.input_records) != (other.input_sha256, other.input_records):
            return "input", (
                f"was labeled from {self.input_name} with sha256 {self.input_sha256[:12]}… "
                f"({self.input_records} records), {other_name} from {other.input_name} with "
                f"sha256 {other.input_sha256[:12]}… ({other.input_records} records)"
            )
        return None


def _identity_text(identity: dict[str, str] | None) -> str:
    """A model identity in a message: ``weights sha256:1a2b3c4d5e6f…, tokenizer …``."""
    if identity is None:
        return "unrecorded (a label file from before format 3)"
    return ", ".join(f"{k} {v[:19]}…" for k, v in sorted(identity.items()))


def parse_shard(text: str) -> tuple[int, int]:
    """'i/n' -> (i, n) with 0 <= i < n."""
    try:
        i, n = (int(x) for x in text.split("/"))
    except ValueError:
        raise ValueError(f"shard must look like 'i/n', got {text!r}") from None
    if not 0 <= i < n:
        raise ValueError(f"shard {text!r}: need 0 <= i < n")
    return i, n


def shard_text(shard: Sequence[int]) -> str:
    return f"{shard[0]}/{shard[1]}"


def shard_block(config: dict[str, Any]) -> int:
    """Consecutive records a shard takes together: MC's or CPMI's ``batch_trajectories`` (a
    block shares engine calls, whose padding can move a logit's last bits, so a shard or a resume
    must see each block whole to give a single run's labels), else 1."""
    method = config.get(config.get("method", ""))
    return int(method.get("batch_trajectories", 1)) if isinstance(method, dict) else 1


def in_shard(index: int, shard: Sequence[int], block: int = 1) -> bool:
    """Shard (i, n) holds the records of blocks i, i + n, i + 2n, … (a block: `block` records)."""
    return (index // block) % shard[1] == shard[0]


def shard_indices(shard: Sequence[int], records: int, block: int = 1) -> list[int]:
    """The input indices shard (i, n) labels out of `records`, in order."""
    return [j for j in range(records) if in_shard(j, shard, block)]


def _first_difference(a: Any, b: Any, where: str = "config") -> tuple[str, Any, Any]:
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(set(a) | set(b), key=str):
            if a.get(key, None) != b.get(key, None) or (key in a) != (key in b):
                return _first_difference(a.get(key), b.get(key), f"{where}.{key}")
    return where, a, b


def _reject_constant(name: str) -> float:
    raise ValueError(f"non-finite number {name}")


def loads_strict(raw: bytes | str) -> Any:
    """JSON without the non-standard NaN/Infinity literals (ValueError names them)."""
    return json.loads(raw, parse_constant=_reject_constant)


def dumps_record(record: dict[str, Any]) -> bytes:
    """One output line; refuses NaN and infinities (ValueError) instead of writing them."""
    return (json.dumps(record, allow_nan=False) + "\n").encode()


def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def record_problem(record: Any) -> str | None:
    """Why a parsed line is not a label record of this suite (None: it is one)."""
    if not isinstance(record, dict):
        return f"a JSON {json_type(record)}, not an object"
    missing = [k for k in ("index", "id", "model", "config", "run") if k not in record]
    if missing:
        return f"no {missing[0]!r} field"
    if not _is_int(record["index"]) or record["index"] < 0:
        return f"'index' must be a non-negative integer, got {record['index']!r}"
    if not isinstance(record["model"], str) or not isinstance(record["config"], dict):
        return "'model' must be a string and 'config' an object"
    run = record["run"]
    if not isinstance(run, dict) or any(k not in run for k in _RUN_KEYS):
        return f"'run' must be an object with {', '.join(_RUN_KEYS)}"
    shard = run["shard"]
    if (
        not (isinstance(shard, list) and len(shard) == 2 and all(map(_is_int, shard)))
        or not 0 <= shard[0] < shard[1]
    ):
        return f"'run.shard' must be [i, n] with 0 <= i < n, got {shard!r}"
    identity = run.get("model_identity")
    if identity is not None and not (
        isinstance(identity, dict) and all(isinstance(v, str) for v in identity.values())
    ):
        return "'run.model_identity' must be an object of strings or null"
    if not isinstance(run["input_sha256"], str) or not _is_int(run["input_records"]):
        return "'run.input_sha256' must be a string and 'run.input_records' an integer"
    if record["index"] >= run["input_records"]:
        return f"index {record['index']} is past the input's {run['input_records']} records"
    if "skipped" in record:
        if not isinstance(record["skipped"], dict):
            return "'skipped' must be an object"
    elif not isinstance(record["id"], str):
        return f"'id' must be a string, got {record['id']!r}"
    elif not isinstance(record.get("steps"), list) or not isinstance(record.get("costs"), dict):
        return "a labeled record needs 'steps' (a list) and 'costs' (an object)"
    return None


@dataclass
class LabelFileScan:
    """The lines of a label file: (line number, record) of every complete line, the byte length
    of the complete lines, and the torn last line (bytes without a newline) if any."""

    records: list[tuple[int, dict[str, Any]]]
    good_bytes: int
    torn: bytes


def scan_label_file(path: Path, data: bytes) -> LabelFileScan:
    """Parse `data` (the bytes of `path`) strictly: every complete line must be a label record.

    Raises LabelFileError naming the file and line of the first line that is not one.
    """
    records: list[tuple[int, dict[str, Any]]] = []
    good = 0
    lines = data.split(b"\n")
    torn = lines.pop()  # after the last newline: b"" unless the last line was torn
    for lineno, raw in enumerate(lines, start=1):
        try:
            record = loads_strict(raw)
        except (ValueError, UnicodeDecodeError) as exc:
            why = "a blank line" if not raw.strip() else f"not valid JSON: {exc}"
            raise LabelFileError(f"{path} line {lineno}: not a label record ({why})") from None
        problem = record_problem(record)
        if problem is not None:
            raise LabelFileError(f"{path} line {lineno}: not a label record ({problem})")
        records.append((lineno, record))
        good += len(raw) + 1
    return LabelFileScan(records, good, torn)


def torn_line_problem(torn: bytes) -> str | None:
    """Why a torn last line cannot be a label record cut by a kill (None: it can be)."""
    n = min(len(torn), len(RECORD_START))
    if torn[:n] != RECORD_START[:n]:
        return "its last line has no newline and does not start like a label record"
    return None


def check_one_run(
    path: Path, scan: LabelFileScan, expected: RunIdentity | None = None
) -> RunIdentity | None:
    """Check that every line of a scanned file is of one run, with no index or id twice; return
    that run's identity (None for a file without lines).

    With `expected` (a resume) every line must be of that run; without it (a merge) of the run
    of the file's first line.
    """
    seen_index: dict[int, int] = {}
    seen_id: dict[str, int] = {}
    first: RunIdentity | None = None
    first_line = 0
    for lineno, record in scan.records:
        ident = RunIdentity.of_record(record)
        if first is None:
            first, first_line = ident, lineno
        if expected is not None:
            diff = ident.difference(expected)
            if diff is not None:
                advice = (
                    "the input was edited since this file was started: label it into a new file"
                    if diff[0] == "input"
                    else "resume with the same options or write a new file"
                )
                raise LabelFileError(f"{path} line {lineno}: {diff[1]}; {advice}")
        else:
            diff = ident.difference(first, other_name=f"line {first_line}")
            if diff is not None:
                raise LabelFileError(f"{path} line {lineno}: {diff[1]}: not one run")
        i, n = ident.shard
        index = record["index"]
        if not in_shard(index, ident.shard, shard_block(ident.config)):
            raise LabelFileError(
                f"{path} line {lineno}: index {index} does not belong to shard {i}/{n}"
            )
        if index in seen_index:
            raise LabelFileError(
                f"{path} lines {seen_index[index]} and {lineno}: index {index} is there twice; "
                "this file is not one clean run: label into a new file"
            )
        seen_index[index] = lineno
        if "skipped" not in record:
            rid = record["id"]
            if rid in seen_id:
                raise LabelFileError(
                    f"{path} lines {seen_id[rid]} and {lineno}: id {rid!r} is labeled twice; "
                    "this file is not one clean run: label into a new file"
                )
            seen_id[rid] = lineno
    return expected if expected is not None else first


# ------------------------------------------------------------------------------------- locking


def lock_file(
    f: IO[bytes], path: Path, mode: int, error: type[LabelFileError] = LabelFileError
) -> None:
    """Take `mode` (shared or exclusive) on `f` without waiting; `error` if it is held."""
    try:
        fcntl.flock(f.fileno(), mode | fcntl.LOCK_NB)
    except OSError as exc:
        if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            raise
        raise error(
            f"{path} is being written by another process (it holds the file's lock); wait for it "
            "to finish or write to another file"
        ) from None


@contextmanager
def locked_output(path: Path, *, resume: bool) -> Iterator[tuple[IO[bytes], bool]]:
    """The output file opened read-write under an exclusive lock, and whether this call made it.

    Without `resume` the file must not exist (FileExistsError). The lock is `flock`'s: the kernel
    drops it when the process dies, so a killed run can be resumed at once. A file this call made
    and that is still empty when the block fails is removed again.
    """
    flags = os.O_RDWR | os.O_CREAT | os.O_EXCL
    created = True
    try:
        fd = os.open(path, flags, 0o644)
    except FileExistsError:
        if not resume:
            raise FileExistsError(
                f"{path} exists: pass resume=True (--resume) to complete it, or write a new file"
            ) from None
        fd, created = os.open(path, os.O_RDWR), False
    f = os.fdopen(fd, "r+b")
    try:
        lock_file(f, path, fcntl.LOCK_EX, OutputRefused)
        if os.fstat(f.fileno()).st_ino != os.stat(path).st_ino:  # removed and made anew meanwhile
            raise LabelFileError(f"{path} was replaced while it was opened; run again")
        try:
            yield f, created
        except BaseException:
            if created and os.fstat(f.fileno()).st_size == 0:
                path.unlink(missing_ok=True)
            raise
    except BaseException:
        # a write the OS refused (disk full) left bytes in the buffer: closing would fail again
        # and hide the first error, which names the file
        with suppress(OSError):
            f.close()
        raise
    f.close()  # releases the lock
