"""The types of the results contract (`cpmi_lib.report.claims`): a `Claim` is one measured
number, a `Family` a finite set of claims named by one template."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

#: How `results/README.md` shows the number: with its CI, as a count, as a p-value, or as a
#: relative saving next to the paper's.
Style = Literal["ci", "count", "p", "saving"]


@dataclass(frozen=True)
class Claim:
    """One measured number and what it claims.

    `name` is its key in `results/headline.json`, or, where `table_row` is set, a name for a
    number read from row `table_row` of `table` (column ``measured``). `row`: a row of
    `results/README.md`'s claims table (False: recorded for the notes, the seeds check and
    reruns)."""

    name: str
    text: str
    notebook: str
    table: str | None = None
    figure: str | None = None
    paper: float | None = None
    style: Style = "ci"
    row: bool = True
    table_row: str | None = None
    #: Declared, produced by the default grid's code, but not yet in the committed results: the
    #: default grid has not been rerun since the code that measures it landed. The README says
    #: so; a test fails once the committed `results/headline.json` holds it (drop the flag then).
    awaiting_rerun: bool = False

    @property
    def recorded(self) -> bool:
        """Whether the number is an entry of `results/headline.json`."""
        return self.table_row is None


Value = int | str


@dataclass(frozen=True)
class Family:
    """Claims named by `template` (one ``{}``) for each of an explicit, finite set of values.

    `values` are those the default grid produces; `elsewhere` pairs a value that only other
    presets produce with those presets. ``family[value]`` is the claim, and refuses an undeclared
    value. Its README row (if `row`) shows the largest value the headline file holds."""

    template: str
    text: str
    notebook: str
    values: tuple[Value, ...]
    elsewhere: tuple[tuple[Value, str], ...] = ()
    table: str | None = None
    figure: str | None = None
    style: Style = "ci"
    row: bool = True
    awaiting_rerun: bool = False

    def __post_init__(self) -> None:
        if self.template.count("{}") != 1 or self.text.count("{}") != 1:
            raise ValueError(f"{self.template!r} and its text must hold exactly one {{}} each")

    @property
    def all_values(self) -> tuple[Value, ...]:
        """The default grid's values, then those of other presets."""
        return (*self.values, *(v for v, _ in self.elsewhere if v not in self.values))

    def __getitem__(self, value: Value) -> Claim:
        if value not in self.all_values:
            raise KeyError(
                f"{self.template.format(value)!r} is not declared in cpmi_lib/report/claims.py "
                f"(declared values of {self.template!r}: {self.all_values})"
            )
        name, text = self.template.format(value), self.text.format(value)
        return Claim(
            name,
            text,
            self.notebook,
            self.table,
            self.figure,
            style=self.style,
            row=self.row,
            awaiting_rerun=self.awaiting_rerun,
        )

    def members(self, default_grid_only: bool = False) -> tuple[Claim, ...]:
        return tuple(self[v] for v in (self.values if default_grid_only else self.all_values))

    def largest(self, names: Iterable[str]) -> Value | None:
        """The largest value whose name is among `names` (e.g. a headline file's), or None."""
        present = set(names)
        found = [v for v in sorted(self.all_values) if self[v].name in present]
        return found[-1] if found else None


#: The Best-of-N sizes the headline reports (a preset's largest N): 16 in the default grid...
BON_NS: tuple[int, ...] = (16,)
#: ... and 4 in the smoke grid only.
BON_ELSEWHERE: tuple[tuple[Value, str], ...] = ((4, "smoke"),)
