"""Which files a labeling command may write: only those it made, or a label file of its own run.

`label` writes OUT (its label file) and OUT.costs.json (what the file cost); `merge` writes OUT
through a temporary file of a fresh name beside it (so no file of the user's, a shard named
``OUT.tmp`` included, is ever its temporary) and OUT.costs.json. Before any work, both refuse,
naming the paths (`OutputRefused`; exit code 2 on the command line):

- an output path (OUT or its cost summary) that is one of their inputs, by path or by file
  identity (a hard link, a symlink);
- a cost summary that exists and is not one (a file the suite did not write);
- an output that another process holds locked (a `label` still writing it, a `merge` in flight).

Whether an existing OUT is a label file of this very run is checked by the caller, which knows the
run (`label_input.check_existing` on resume, `label_results.merge_label_files` on merge); both
refuse it with `OutputRefused` as well.
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from cpmi_lib.core.costs import Costs
from cpmi_lib.core.files import write_atomically
from cpmi_lib.labeling.runs import OutputRefused, lock_file

__all__ = [
    "OutputRefused",
    "check_outputs",
    "costs_path",
    "is_cost_summary",
    "same_file",
    "write_costs",
]

#: The cost summary written beside a label file: ``OUT`` + this suffix.
COSTS_SUFFIX = ".costs.json"
_COST_FIELDS = set(Costs().to_dict())


def costs_path(out: Path) -> Path:
    """Where the cost summary of label file `out` goes."""
    return out.with_name(out.name + COSTS_SUFFIX)


def same_file(a: Path, b: Path) -> bool:
    """Whether two paths name one file (by identity when both exist, else by resolved path)."""
    if a.exists() and b.exists():
        return os.path.samefile(a, b)
    return a.resolve() == b.resolve()


def check_outputs(out: Path, inputs: Sequence[Path], what: str = "the input file") -> None:
    """Refuse (`OutputRefused`) an output of label file `out` that is an input (`what` says
    which kind), a cost summary path holding something else, or an output locked by another
    process."""
    summary = costs_path(out)
    for p in inputs:
        if same_file(out, p):
            also = "" if out == p else f" {p}"  # another name of it: a link
            raise OutputRefused(f"{out} is {what}{also}; write the labels to a new file")
        if same_file(summary, p):
            also = "" if summary == p else f" {p}"
            raise OutputRefused(
                f"{out}: its cost summary {summary} is {what}{also}; choose another output name"
            )
    if summary.exists() and not is_cost_summary(summary):
        raise OutputRefused(
            f"{summary} exists and is not a cost summary (this command writes the costs of {out} "
            "there); move it or choose another output name"
        )
    check_unlocked(out)


def write_costs(out: Path, costs: dict[str, Any]) -> Path:
    """Write the cost summary of label file `out` (whole or not at all); an OS error names it."""
    summary = costs_path(out)
    text = json.dumps(costs, indent=2, allow_nan=False) + "\n"
    try:
        write_atomically(summary, text)
    except OSError as exc:
        raise OSError(exc.errno, exc.strerror, str(summary)) from None
    return summary


def is_cost_summary(path: Path) -> bool:
    """Whether `path` is a file holding a cost summary as `label` and `merge` write them."""
    if not path.is_file():
        return False
    try:
        value = json.loads(path.read_bytes())
    except (ValueError, UnicodeDecodeError, OSError):
        return False
    return isinstance(value, dict) and bool(value) and set(value) <= _COST_FIELDS


def check_unlocked(out: Path) -> None:
    """Refuse an existing output that another process holds under its lock (probed, released)."""
    if not out.is_file():
        return
    with out.open("rb") as f:
        lock_file(f, out, fcntl.LOCK_EX, OutputRefused)
