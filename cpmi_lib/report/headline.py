"""`results/headline.json`: the grid's headline numbers, machine-readable.

One JSON object mapping a name to ``{"value": number, "ci": [low, high] or null, "n": count}``;
the names are declared in `cpmi_lib.report.claims`, and producers add entries with `put_entry`.
Several notebooks contribute to the same file (`record_headline` merges under a lock and replaces
the file atomically), `results/README.md` reads its claims from it, and a rerun on another machine
is checked against the committed file with `compare_headlines` (``python -m cpmi_lib.grid
--compare``). One entry per line, names sorted, so a rerun diffs line by line; NaN and infinities
are refused, never written (JSON has no spelling for them).
"""

from __future__ import annotations

import fcntl
import json
import math
import numbers
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
from tabulate import tabulate

from cpmi_lib.core.files import write_atomically
from cpmi_lib.report.claims import Claim

FILENAME = "headline.json"
FIELDS = ("value", "ci", "n")
_NAME = re.compile(r"[A-Za-z0-9_.\-]+")

WITHIN = "within committed CI"
OUTSIDE = "outside committed CI"
EXACT = "no CI (exact match)"
DIFFERS = "no CI (differs)"
MISSING = "missing in rerun"
NEW = "new in rerun"
VERDICTS = (WITHIN, OUTSIDE, EXACT, DIFFERS, MISSING, NEW)


class HeadlineError(ValueError):
    """A headline entry or file is malformed; the message names the entry (and file) and field."""


def _real(x: object) -> bool:
    """A real number and not a bool (JSON would write a bool as true/false, not a number)."""
    return isinstance(x, numbers.Real) and not isinstance(x, bool)


def _finite(x: numbers.Real) -> bool:
    try:
        return math.isfinite(x)
    except OverflowError:  # an int too large for a float
        return False


@dataclass(frozen=True)
class Headline:
    """One headline number: `value`, its 95% CI ``(low, high)`` or None, and the count `n` it is
    computed from (problems, steps, seconds' runs...). Checked on construction."""

    value: float
    ci: tuple[float, float] | None
    n: int

    def __post_init__(self) -> None:
        if not _real(self.value):
            raise HeadlineError(f"value must be a number, got {self.value!r}")
        if not _finite(self.value):
            raise HeadlineError(f"value must be finite, got {self.value!r}")
        object.__setattr__(self, "value", float(self.value))
        if self.ci is not None:
            if isinstance(self.ci, str | bytes | Mapping) or not hasattr(self.ci, "__len__"):
                raise HeadlineError(f"ci must be [low, high] or null, got {self.ci!r}")
            if len(self.ci) != 2:
                raise HeadlineError(f"ci must be [low, high] or null, got {list(self.ci)!r}")
            low, high = self.ci
            if not (_real(low) and _real(high)):
                raise HeadlineError(f"ci bounds must be numbers, got {list(self.ci)!r}")
            if not (_finite(low) and _finite(high)):
                raise HeadlineError(f"ci bounds must be finite, got {list(self.ci)!r}")
            if not low <= self.value <= high:
                raise HeadlineError(
                    f"ci [{low!r}, {high!r}] must contain the value {self.value!r} "
                    "(low <= value <= high)"
                )
            object.__setattr__(self, "ci", (float(low), float(high)))
        if not isinstance(self.n, numbers.Integral) or isinstance(self.n, bool):
            raise HeadlineError(f"n must be an integer count, got {self.n!r}")
        if self.n < 0:
            raise HeadlineError(f"n must be >= 0, got {self.n!r}")
        object.__setattr__(self, "n", int(self.n))

    def to_json(self) -> dict[str, Any]:
        return {"value": self.value, "ci": None if self.ci is None else list(self.ci), "n": self.n}


def as_headline(name: object, entry: Headline | Mapping[str, Any], where: str = "") -> Headline:
    """`entry` (a `Headline` or a mapping with exactly value, ci, n) checked, errors naming it."""
    at = f"{where}: " if where else ""
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise HeadlineError(f"{at}headline name must match [A-Za-z0-9_.-]+, got {name!r}")
    if isinstance(entry, Headline):
        return entry
    if not isinstance(entry, Mapping):
        raise HeadlineError(
            f"{at}headline {name!r}: entry must be an object with value, ci, n, got {entry!r}"
        )
    missing = [f for f in FIELDS if f not in entry]
    if missing:
        raise HeadlineError(f"{at}headline {name!r}: missing field(s) {missing}")
    extra = sorted(str(k) for k in entry if k not in FIELDS)
    if extra:
        raise HeadlineError(f"{at}headline {name!r}: unknown field(s) {extra}")
    try:
        return Headline(entry["value"], entry["ci"], entry["n"])
    except HeadlineError as exc:
        raise HeadlineError(f"{at}headline {name!r}: {exc}") from None


def put_entry(out: dict[str, Headline], claim: Claim, value: Any, ci: Any, n: int) -> None:
    """Add the declared `claim`'s number to `out` (under its name) unless its value is undefined
    in this run (None or NaN: left out, not faked); a CI with an undefined end becomes None.

    A producer names its numbers only through `cpmi_lib.report.claims`: a bare string, or a claim
    that lives in a table rather than in the headline file, is refused."""
    if not isinstance(claim, Claim) or not claim.recorded:
        raise HeadlineError(
            f"{claim!r}: headline numbers are recorded under a declared claim of "
            "cpmi_lib/report/claims.py (one with no table_row)"
        )
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return
    if ci is not None and any(c is None or math.isnan(c) for c in ci):
        ci = None
    out[claim.name] = Headline(float(value), tuple(ci) if ci is not None else None, int(n))


def _headline_path(path: str | os.PathLike[str]) -> Path:
    """A results folder means its headline.json; anything else is the file itself."""
    p = Path(path)
    return p / FILENAME if p.is_dir() else p


def read_headline(path: str | os.PathLike[str]) -> dict[str, Headline]:
    """The entries of a headline file (or of ``<results_dir>/headline.json``), every one checked.

    A missing or malformed file is a `HeadlineError` naming it."""
    p = _headline_path(path)
    if not p.is_file():
        raise HeadlineError(f"headline file {p} does not exist")
    try:
        raw = json.loads(p.read_text(), parse_constant=_refuse_constant, object_pairs_hook=_pairs)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise HeadlineError(f"{p}: not valid JSON ({exc})") from None
    except HeadlineError as exc:
        raise HeadlineError(f"{p}: {exc}") from None
    if not isinstance(raw, dict):
        raise HeadlineError(
            f"{p}: must hold a JSON object of name -> entry, got {type(raw).__name__}"
        )
    return {name: as_headline(name, entry, where=str(p)) for name, entry in raw.items()}


def _refuse_constant(token: str) -> float:
    raise HeadlineError(f"{token} is not a finite number")


def _pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON object, refusing a name given twice (json keeps the last one silently)."""
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise HeadlineError(f"{key!r} appears twice")
        out[key] = value
    return out


def dumps_headline(entries: Mapping[str, Headline]) -> str:
    """The file's text: one entry per line, names sorted, fields in the order value, ci, n."""
    if not entries:
        return "{}\n"
    lines = [
        f"  {json.dumps(name)}: {json.dumps(entries[name].to_json(), allow_nan=False)}"
        for name in sorted(entries)
    ]
    return "{\n" + ",\n".join(lines) + "\n}\n"


def record_headline(
    results_dir: str | os.PathLike[str], entries: Mapping[str, Headline | Mapping[str, Any]]
) -> Path:
    """Merge `entries` into ``<results_dir>/headline.json``; return the file.

    Every new entry is checked before anything is written; names already in the file are kept
    unless `entries` sets them again (each notebook owns its names). The read-merge-write holds an
    exclusive ``flock`` on the folder, so concurrent writers queue rather than drop each other's
    entries, and the new text replaces the file atomically (a reader never sees half a file). A
    malformed existing file is refused, not overwritten."""
    new = {name: as_headline(name, entry) for name, entry in entries.items()}
    folder = Path(results_dir)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / FILENAME
    fd = os.open(folder, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        merged = read_headline(path) if path.exists() else {}
        merged.update(new)
        text = dumps_headline(merged)
        write_atomically(path, text, sync=True)
    finally:
        os.close(fd)  # releases the lock
    return path


def _verdict(committed: Headline | None, rerun: Headline | None) -> str:
    if rerun is None:
        return MISSING
    if committed is None:
        return NEW
    if committed.ci is None:
        return EXACT if rerun.value == committed.value else DIFFERS
    low, high = committed.ci
    return WITHIN if low <= rerun.value <= high else OUTSIDE


def compare_headlines(
    committed: Mapping[str, Headline], rerun: Mapping[str, Headline]
) -> pd.DataFrame:
    """One row per name of either side (sorted): both values, CIs and counts, the difference
    (rerun - committed) and the verdict, whether the rerun lies within the committed CI."""
    rows = []
    for name in sorted(set(committed) | set(rerun)):
        c, r = committed.get(name), rerun.get(name)
        rows.append(
            {
                "name": name,
                "committed": None if c is None else c.value,
                "committed CI": None if c is None else c.ci,
                "committed n": None if c is None else c.n,
                "rerun": None if r is None else r.value,
                "rerun CI": None if r is None else r.ci,
                "rerun n": None if r is None else r.n,
                "difference": None if c is None or r is None else r.value - c.value,
                "verdict": _verdict(c, r),
            }
        )
    columns = ["name", "committed", "committed CI", "committed n", "rerun", "rerun CI"]
    columns += ["rerun n", "difference", "verdict"]
    table = pd.DataFrame(rows, columns=columns)
    return table.astype({"committed n": "Int64", "rerun n": "Int64"})


def _fmt(x: object, signed: bool = False) -> str:
    if x is None or x is pd.NA or (isinstance(x, float) and math.isnan(x)):
        return "—"
    if isinstance(x, tuple):
        return f"[{_fmt(x[0])}, {_fmt(x[1])}]"
    if isinstance(x, numbers.Integral):
        return str(int(x))
    return f"{x:+.6g}" if signed else f"{x:.6g}"


def format_comparison(table: pd.DataFrame) -> str:
    """`compare_headlines`'s table as Markdown (reads as-is in a terminal), with a count line."""
    body = [
        [
            row["name"],
            _fmt(row["committed"]),
            _fmt(row["committed CI"]),
            _fmt(row["committed n"]),
            _fmt(row["rerun"]),
            _fmt(row["rerun CI"]),
            _fmt(row["rerun n"]),
            _fmt(row["difference"], signed=True),
            row["verdict"],
        ]
        for row in table.to_dict("records")
    ]
    text = tabulate(body, headers=list(table.columns), tablefmt="github", disable_numparse=True)
    counts = table["verdict"].value_counts()
    summary = ", ".join(f"{counts[v]} {v}" for v in VERDICTS if v in counts)
    return f"{text}\n\n{len(table)} headline numbers: {summary or 'none'}\n"
