"""A ProcessBench-style benchmark of world problems: subsets by number of steps, half gold, half
with one known error, exportable in the `Qwen/ProcessBench` schema."""

from __future__ import annotations

import random
from collections.abc import Iterable
from typing import Any

from cpmi_lib.core.trajectory import Trajectory
from cpmi_lib.data.world import Problem, WorldConfig
from cpmi_lib.data.world_errors import corrupt


def subsets_by_length(cfg: WorldConfig, n_subsets: int = 3) -> dict[str, tuple[int, int]]:
    """Difficulty subsets of a world: its step-count range cut into up to three bins."""
    lengths = list(range(cfg.min_steps, cfg.max_steps + 1))
    n = min(n_subsets, len(lengths))
    names = {1: ["all"], 2: ["short", "long"], 3: ["short", "medium", "long"]}[n]
    bins: dict[str, tuple[int, int]] = {}
    for i, name in enumerate(names):
        chunk = lengths[i * len(lengths) // n : (i + 1) * len(lengths) // n]
        bins[name] = (chunk[0], chunk[-1])
    return bins


def make_benchmark(
    problems: Iterable[Problem],
    n_per_subset: int,
    subsets: dict[str, tuple[int, int]],
    seed: int = 0,
) -> dict[str, list[Trajectory]]:
    """A ProcessBench-style benchmark: subsets by number of steps, half correct, half erroneous.

    Each problem contributes one trajectory (its gold solution or one corruption), so the items of
    a subset are independent. Error kinds and positions are drawn uniformly.
    """
    rng = random.Random(seed)
    pool = list(problems)
    out: dict[str, list[Trajectory]] = {}
    for name, (lo, hi) in subsets.items():
        eligible = [p for p in pool if lo <= p.n_steps <= hi]
        rng.shuffle(eligible)
        plan = [True] * (n_per_subset // 2) + [False] * (n_per_subset - n_per_subset // 2)
        rng.shuffle(plan)
        remaining = iter(eligible)
        items: list[Trajectory] = []
        for want_error in plan:
            for p in remaining:
                t = corrupt(p, rng) if want_error else p.gold_trajectory()
                if t is not None:
                    t.metadata["subset"] = name
                    items.append(t)
                    break
            else:
                raise ValueError(
                    f"subset {name!r} ({lo}-{hi} steps): only {len(items)} of {n_per_subset} "
                    "items could be made; give more problems of that length"
                )
        out[name] = items
    return out


def to_processbench_rows(
    trajectories: Iterable[Trajectory], generator: str = "arithmetic-world"
) -> list[dict[str, Any]]:
    """Rows in the `Qwen/ProcessBench` schema, so the paper-scale loader reads the benchmark too."""
    rows = []
    for t in trajectories:
        if t.first_error is None:
            raise ValueError(f"trajectory {t.id!r}: field 'first_error' unknown; cannot export")
        rows.append(
            {
                "id": t.id,
                "generator": generator,
                "problem": t.question,
                "steps": list(t.steps),
                "final_answer_correct": t.first_error == -1,
                "label": t.first_error,
            }
        )
    return rows
