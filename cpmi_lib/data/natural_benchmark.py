"""A ProcessBench-style benchmark of *natural* errors: solutions that LMs sampled themselves.

The synthetic benchmark (`cpmi_lib.data.world_benchmark`) corrupts gold solutions, and such
corruptions are very surprising to an LM; a policy's own mistakes are not. Here every item is a
sampled solution of a world problem, graded exactly (`cpmi_lib.data.world_grading.grade_steps`),
and every subset is one generator LM (weaker than the policy, the policy, stronger). This module
builds the items from graded samples and writes and reads them in the `Qwen/ProcessBench` schema;
the sampling is the experiment's (`cpmi_lib.experiment.natural`).

**Items.** Samples whose first error is unknown (every step right, but the answer line wrong or
missing: `first_error` None) are dropped and counted. A problem gives at most one item (so the
items of a subset are independent): its first all-correct sample (``first_error == -1``) or its
first erroneous one (``first_error >= 0``), in sample order.

**Balance rule** (`select_items`). Of n items, ``n // 2`` are erroneous and ``n - n // 2``
all-correct, as in the synthetic benchmark. Problems are taken in pool order: first those that can
give only one kind of item fill that side; then problems that can give either fill the side with
more left to fill (the erroneous side on a tie). This fills both halves whenever any assignment
of one item per problem can. When the samples cannot (too few problems with an all-correct, or
an erroneous, sample), the short side takes all it can and the other side fills the subset up to
n items; fewer than n only when the pool has fewer usable problems. `SubsetReport` records the
counts, so a shortfall is never silent.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from cpmi_lib.core.files import write_atomically
from cpmi_lib.core.trajectory import Trajectory
from cpmi_lib.data.loaders import load_processbench
from cpmi_lib.data.world_benchmark import to_processbench_rows
from cpmi_lib.data.world_data import dataset_card

#: The generators, weakest first: the policy's recipe with fewer training steps, the policy LM,
#: the PRM backbone LM (the policy trained further).
GENERATORS = ("weak", "policy", "strong")
SPLITS = ("dev", "test")


@dataclass(frozen=True)
class NaturalBenchmarkConfig:
    """Sizes of the natural-error benchmark (`ExperimentConfig.natural`)."""

    #: The subsets, one per generator LM (a subset of `GENERATORS`, in that order).
    generators: tuple[str, ...] = GENERATORS
    #: Items per subset: test (F1 reported) and dev (τ chosen).
    test_items: int = 200
    dev_items: int = 100
    #: Solutions sampled per problem (at the policy's temperature), to find both kinds of item.
    samples_per_problem: int = 8
    #: Problems sampled per item wanted: the spare ones fill the balance.
    problems_per_item: float = 1.5
    #: The weak generator's training steps, as a share of the policy LM's (not measured yet on
    #: the default world: it must still solve some problems, or its subset has no all-correct
    #: item and no F1).
    weak_step_fraction: float = 0.6

    def __post_init__(self) -> None:
        unknown = [g for g in self.generators if g not in GENERATORS]
        if unknown or not self.generators or len(set(self.generators)) != len(self.generators):
            raise ValueError(
                f"NaturalBenchmarkConfig.generators: {self.generators}; distinct names of "
                f"{GENERATORS}"
            )
        if min(self.test_items, self.dev_items, self.samples_per_problem) < 1:
            raise ValueError(f"NaturalBenchmarkConfig: items and samples must be positive: {self}")
        if self.problems_per_item < 1.0:
            raise ValueError("NaturalBenchmarkConfig.problems_per_item must be >= 1")
        if not 0.0 < self.weak_step_fraction < 1.0:
            raise ValueError("NaturalBenchmarkConfig.weak_step_fraction must be in (0, 1)")

    def items(self, split: str) -> int:
        """Items per subset of a split."""
        return {"dev": self.dev_items, "test": self.test_items}[_checked(split)]

    def problems(self, split: str) -> int:
        """Problems sampled per subset of a split."""
        return math.ceil(self.items(split) * self.problems_per_item)

    def to_dict(self) -> dict[str, Any]:
        return json.loads(json.dumps(asdict(self)))


def _checked(split: str) -> str:
    if split not in SPLITS:
        raise ValueError(f"unknown natural-benchmark split {split!r}; known: {SPLITS}")
    return split


@dataclass(frozen=True)
class SubsetReport:
    """What one subset was made from: samples, dropped ones, problems by what they can give."""

    problems: int  # problems sampled
    samples: int  # solutions kept by the sampler (with at least one step)
    unknown_dropped: int  # samples whose first error is unknown (None)
    correct_only: int  # problems whose known samples are all all-correct
    erroneous_only: int  # problems whose known samples are all erroneous
    either: int  # problems with both kinds
    unusable: int  # problems with no known sample
    wanted: int  # items asked for
    correct_items: int
    erroneous_items: int

    @property
    def items(self) -> int:
        return self.correct_items + self.erroneous_items

    @property
    def balanced(self) -> bool:
        """Whether the subset is full with the rule's halves (`select_items`)."""
        return (self.erroneous_items, self.correct_items) == (
            self.wanted // 2,
            self.wanted - self.wanted // 2,
        )

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "items": self.items, "balanced": self.balanced}


def select_items(
    problem_ids: Sequence[str], samples: Iterable[Trajectory], n_items: int
) -> tuple[list[Trajectory], SubsetReport]:
    """One item per problem, balanced by the module's rule; items in pool order.

    `problem_ids` is the pool in order; `samples` are graded solutions of those problems
    (``metadata["problem_id"]``), in sample order.
    """
    order = {pid: i for i, pid in enumerate(problem_ids)}
    correct: dict[str, Trajectory] = {}
    erroneous: dict[str, Trajectory] = {}
    n_samples = unknown = 0
    for t in samples:
        pid = t.metadata["problem_id"]
        if pid not in order:
            raise ValueError(f"sample {t.id!r}: problem {pid!r} is not in the pool")
        n_samples += 1
        if t.first_error is None:
            unknown += 1
        elif t.first_error == -1:
            correct.setdefault(pid, t)
        else:
            erroneous.setdefault(pid, t)
    want = {"erroneous": n_items // 2, "correct": n_items - n_items // 2}
    chosen: dict[str, Trajectory] = {}
    taken = {"erroneous": 0, "correct": 0}

    def take(pid: str, side: str) -> None:
        chosen[pid] = (correct if side == "correct" else erroneous)[pid]
        taken[side] += 1

    only_c = [p for p in problem_ids if p in correct and p not in erroneous]
    only_e = [p for p in problem_ids if p in erroneous and p not in correct]
    either = [p for p in problem_ids if p in correct and p in erroneous]
    for side, pool in (("correct", only_c), ("erroneous", only_e)):
        for pid in pool[: want[side]]:
            take(pid, side)
    for pid in either:
        need = {side: want[side] - taken[side] for side in want}
        if max(need.values()) <= 0:
            break
        take(pid, "erroneous" if need["erroneous"] >= need["correct"] else "correct")
    # a side the samples cannot fill: the other side fills the subset up to n items
    for pid in problem_ids:
        if len(chosen) >= n_items:
            break
        if pid not in chosen and (pid in correct or pid in erroneous):
            take(pid, "erroneous" if pid in erroneous else "correct")
    report = SubsetReport(
        problems=len(problem_ids),
        samples=n_samples,
        unknown_dropped=unknown,
        correct_only=len(only_c),
        erroneous_only=len(only_e),
        either=len(either),
        unusable=sum(p not in correct and p not in erroneous for p in problem_ids),
        wanted=n_items,
        correct_items=taken["correct"],
        erroneous_items=taken["erroneous"],
    )
    items = sorted(chosen.values(), key=lambda t: order[t.metadata["problem_id"]])
    return items, report


def processbench_rows(items: Iterable[Trajectory], generator: str) -> list[dict[str, Any]]:
    """Rows in the `Qwen/ProcessBench` schema; `final_answer_correct` as graded (a solution with
    a wrong step can still state the right answer)."""
    items = list(items)
    rows = to_processbench_rows(items, generator=generator)
    for row, t in zip(rows, items, strict=True):
        row["final_answer_correct"] = bool(t.metadata.get("final_correct", t.first_error == -1))
    return rows


def write_processbench(
    folder: str | os.PathLike[str],
    subsets: dict[str, list[Trajectory]],
    generators: dict[str, str],
) -> Path:
    """One ``<subset>.jsonl`` a subset and a card naming the subsets as splits, written last (its
    presence means the folder is complete). `generators` names each subset's generator LM."""
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    card = out / "README.md"
    card.unlink(missing_ok=True)
    for subset, items in subsets.items():
        rows = processbench_rows(items, generators[subset])
        write_atomically(out / f"{subset}.jsonl", "".join(json.dumps(r) + "\n" for r in rows))
    card.write_text(dataset_card(list(subsets)))
    return out


def is_written(folder: str | os.PathLike[str]) -> bool:
    """Whether `write_processbench` completed in `folder`."""
    return (Path(folder) / "README.md").exists()


def read_processbench(
    folder: str | os.PathLike[str], subsets: Sequence[str]
) -> dict[str, list[Trajectory]]:
    """The items of a folder written by `write_processbench`, read back by the ProcessBench
    loader (`load_processbench`), by subset."""
    return {s: load_processbench(str(folder), split=s) for s in subsets}
