"""Position controls: what a label source could score by knowing only WHERE a step is.

With prefix labels (True before the first error, False from it on) late steps are wrong more
often, so any score that rises or falls with the step index beats chance against the truth
without knowing anything about the steps themselves. Two controls keep that from being credited:

- `PositionLabeler`: a label source that knows nothing but (step index i, number of steps S). It
  scores step i of an S-step trajectory with the smoothed rate of correct steps in the (i, S)
  cell of the training trajectories. Its pooled AUROC is the bar a real label source must clear,
  and trained into a PRM (`label_records` + the ``mc_soft`` transform) it is the PRM baseline.
- `position_auroc`: AUROC within step position (`cpmi_lib.core.roc.stratified_auroc`), with a
  bootstrap CI that resamples whole trajectories. A pure function of position gets exactly 0.5.

Smoothing (empirical-Bayes style, additive, prior strength m = `prior_strength`, in steps):

    global   g      = (k + 1) / (n + 2)                 (Laplace: strictly inside (0, 1))
    position p_i    = (k_i + m * g) / (n_i + m)         (all trajectory lengths pooled)
    cell     c_i,S  = (k_i,S + m * p_i) / (n_i,S + m)

where k and n count correct and all training steps in the group. An unseen cell gets p_i, an
unseen position g; every score is finite and strictly inside (0, 1). Nothing is random.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy as np

from cpmi_lib.core.intervals import Resampling
from cpmi_lib.core.records import RecordError
from cpmi_lib.core.roc import auroc, stratified_auroc, stratified_auroc_ci
from cpmi_lib.core.trajectory import Trajectory

#: Default prior strength m: a cell needs about m steps of its own before its own rate
#: outweighs its position's.
DEFAULT_PRIOR_STRENGTH = 5.0
#: The label-record step field the scores are written to, and the existing target transform that
#: reads it (`cpmi_lib.prm.targets.SCORE_FIELD["mc_soft"] == "value"`): rates in [0, 1] as soft
#: targets, as for MC values.
SCORE_FIELD = "value"
TARGET_TRANSFORM = "mc_soft"
METHOD = "position"
FORMAT = 1

Labels = Sequence[Sequence[Any]] | Mapping[str, Sequence[Any]]
StratumKey = Literal["index", "index_and_length"]


def reference_labels(
    trajectories: Sequence[Trajectory], labels: Labels | None = None
) -> list[list[int]]:
    """Per-trajectory 0/1 labels: `labels` (aligned list, or mapping by trajectory id) or, when
    None, each trajectory's exact `step_labels`. Errors name the trajectory and the field."""
    if labels is not None and not isinstance(labels, Mapping) and len(labels) != len(trajectories):
        raise ValueError(f"labels has {len(labels)} entries for {len(trajectories)} trajectories")
    out: list[list[int]] = []
    for j, t in enumerate(trajectories):
        where = f"trajectory {t.id!r}"
        if labels is None:
            got, name = t.step_labels, "step_labels"
            if got is None:
                raise RecordError(where, name, "missing: the position labeler fits on step labels")
        elif isinstance(labels, Mapping):
            got, name = labels.get(t.id), "labels"
            if got is None:
                raise RecordError(where, name, "missing: no labels given for this trajectory")
        else:
            got, name = labels[j], "labels"
        if len(got) != t.n_steps:
            raise RecordError(where, name, f"has {len(got)} labels for {t.n_steps} steps")
        row = []
        for i, v in enumerate(got):
            if isinstance(v, bool | np.bool_) or (
                isinstance(v, int | float | np.integer | np.floating) and v in (0, 1)
            ):
                row.append(int(v))
            else:
                raise RecordError(where, f"{name}[{i}]", f"must be a boolean or 0/1, got {v!r}")
        out.append(row)
    return out


class PositionLabeler:
    """Scores a step by the smoothed training rate of correct steps at its (index, length) cell.

    Build with `fit`; the counts are all it holds, so `to_dict`/`from_dict` restore it exactly.
    """

    def __init__(
        self,
        cells: Mapping[tuple[int, int], tuple[int, int]],
        prior_strength: float = DEFAULT_PRIOR_STRENGTH,
    ) -> None:
        if not (math.isfinite(prior_strength) and prior_strength > 0):
            raise ValueError(f"prior_strength must be finite and > 0, got {prior_strength!r}")
        if not cells:
            raise ValueError("a position labeler needs at least one labeled step")
        self.prior_strength = float(prior_strength)
        #: (i, S) -> (correct steps, steps) in the training trajectories.
        self.cells: dict[tuple[int, int], tuple[int, int]] = {}
        for (i, n_steps), (k, n) in sorted(cells.items()):
            if not (0 <= i < n_steps and 0 <= k <= n and n > 0):
                raise ValueError(f"bad cell ({i}, {n_steps}): {k} correct of {n} steps")
            self.cells[(int(i), int(n_steps))] = (int(k), int(n))
        self.positions: dict[int, tuple[int, int]] = {}
        for (i, _), (k, n) in self.cells.items():
            k0, n0 = self.positions.get(i, (0, 0))
            self.positions[i] = (k0 + k, n0 + n)
        k_all = sum(k for k, _ in self.cells.values())
        n_all = sum(n for _, n in self.cells.values())
        self.global_counts = (k_all, n_all)
        self.global_rate = (k_all + 1.0) / (n_all + 2.0)

    @classmethod
    def fit(
        cls,
        trajectories: Sequence[Trajectory],
        labels: Labels | None = None,
        *,
        prior_strength: float = DEFAULT_PRIOR_STRENGTH,
    ) -> PositionLabeler:
        """Count correct steps per (i, S) cell of TRAINING trajectories (labels: see
        `reference_labels`); refuses an unlabeled trajectory, naming it."""
        if not trajectories:
            raise ValueError("cannot fit a position labeler on no trajectories")
        cells: dict[tuple[int, int], tuple[int, int]] = {}
        for t, row in zip(trajectories, reference_labels(trajectories, labels), strict=True):
            for i, y in enumerate(row):
                k, n = cells.get((i, t.n_steps), (0, 0))
                cells[(i, t.n_steps)] = (k + y, n + 1)
        return cls(cells, prior_strength)

    def position_rate(self, i: int) -> float:
        """p_i: the rate at index i over all lengths, shrunk toward the global rate."""
        k, n = self.positions.get(i, (0, 0))
        return (k + self.prior_strength * self.global_rate) / (n + self.prior_strength)

    def rate(self, i: int, n_steps: int) -> float:
        """c_i,S: the (i, S) cell's rate, shrunk toward p_i."""
        if not 0 <= i < n_steps:
            raise ValueError(f"step {i} is outside a trajectory of {n_steps} steps")
        k, n = self.cells.get((i, n_steps), (0, 0))
        return (k + self.prior_strength * self.position_rate(i)) / (n + self.prior_strength)

    def score(self, n_steps: int) -> list[float]:
        """Scores of the steps of one trajectory of `n_steps` steps."""
        if isinstance(n_steps, bool) or not isinstance(n_steps, int) or n_steps < 1:
            raise ValueError(f"n_steps must be a positive integer, got {n_steps!r}")
        return [self.rate(i, n_steps) for i in range(n_steps)]

    def scores(self, trajectories: Sequence[Trajectory]) -> list[list[float]]:
        return [self.score(t.n_steps) for t in trajectories]

    def label_records(self, trajectories: Sequence[Trajectory]) -> list[dict[str, Any]]:
        """Label records shaped like label files' (``{"id", "method", "steps": [{"value"}]}``),
        so `prm_targets.scores_for_trajectories(trajs, records, "value")` and the ``mc_soft``
        transform make PRM targets of them like MC's."""
        return [
            {
                "id": t.id,
                "method": METHOD,
                "steps": [{SCORE_FIELD: v} for v in self.score(t.n_steps)],
            }
            for t in trajectories
        ]

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe counts (integers) and the prior strength: all that defines the scores."""
        return {
            "method": METHOD,
            "format": FORMAT,
            "prior_strength": self.prior_strength,
            "cells": [[i, s, k, n] for (i, s), (k, n) in self.cells.items()],
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> PositionLabeler:
        if d.get("method") != METHOD or d.get("format") != FORMAT:
            raise ValueError(
                f"not a position labeler record of format {FORMAT}: method "
                f"{d.get('method')!r}, format {d.get('format')!r}"
            )
        cells = {}
        for row in d["cells"]:
            if len(row) != 4 or not all(
                isinstance(x, int) and not isinstance(x, bool) for x in row
            ):
                raise ValueError(f"bad cell row {row!r}: expected [i, S, correct, steps] integers")
            cells[(row[0], row[1])] = (row[2], row[3])
        return cls(cells, float(d["prior_strength"]))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, PositionLabeler) and self.to_dict() == other.to_dict()

    def __repr__(self) -> str:
        k, n = self.global_counts
        return (
            f"PositionLabeler({len(self.cells)} cells, {k}/{n} steps correct, "
            f"prior_strength={self.prior_strength})"
        )


def cross_fit_scores(
    trajectories: Sequence[Trajectory],
    labels: Labels | None = None,
    *,
    n_folds: int = 5,
    prior_strength: float = DEFAULT_PRIOR_STRENGTH,
    seed: int = 0,
) -> list[list[float]]:
    """Out-of-fold position scores: each trajectory scored by a labeler fit on the other folds.

    For measuring the position labeler on the very split it could be fit on (label quality on
    the training steps) without its own labels leaking into its scores. Folds are assigned by a
    seeded hash of the trajectory id (balanced, independent of input order).
    """
    if n_folds < 2 or len(trajectories) < n_folds:
        raise ValueError(f"need 2 <= n_folds <= {len(trajectories)} trajectories, got {n_folds}")
    rows = reference_labels(trajectories, labels)
    order = sorted(
        range(len(trajectories)),
        key=lambda j: (hashlib.sha256(f"{seed}:{trajectories[j].id}".encode()).hexdigest(), j),
    )
    fold = {j: r % n_folds for r, j in enumerate(order)}
    out: list[list[float]] = [[] for _ in trajectories]
    for f in range(n_folds):
        train = [j for j in range(len(trajectories)) if fold[j] != f]
        labeler = PositionLabeler.fit(
            [trajectories[j] for j in train],
            [rows[j] for j in train],
            prior_strength=prior_strength,
        )
        for j in range(len(trajectories)):
            if fold[j] == f:
                out[j] = labeler.score(trajectories[j].n_steps)
    return out


def position_strata(trajectories: Sequence[Trajectory], key: StratumKey = "index") -> list[Any]:
    """One stratum per step, flattened in trajectory order: the index i, or (i, S)."""
    if key == "index":
        return [i for t in trajectories for i in range(t.n_steps)]
    if key == "index_and_length":
        return [(i, t.n_steps) for t in trajectories for i in range(t.n_steps)]
    raise ValueError(f"unknown stratum key {key!r}; known: 'index', 'index_and_length'")


def position_auroc(
    trajectories: Sequence[Trajectory],
    scores: Sequence[Sequence[float]],
    labels: Labels | None = None,
    *,
    key: StratumKey = "index",
    n_resamples: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
) -> dict[str, Any]:
    """Pooled and within-position AUROC of per-step `scores` against 0/1 labels (default: exact
    `step_labels`), with a trajectory-resampling CI of the within-position average.

    JSON-safe: ``{"auroc_pooled", "auroc_within_position", "ci", "n_steps", "n_pairs",
    "stratum_key", "per_position": [{"stratum", "n", "n_pos", "n_neg", "auroc"}]}``; an
    undefined value is None.
    """
    if len(scores) != len(trajectories):
        raise ValueError(f"{len(scores)} score lists for {len(trajectories)} trajectories")
    rows = reference_labels(trajectories, labels)
    flat, truth, clusters = [], [], []
    for t, s, row in zip(trajectories, scores, rows, strict=True):
        if len(s) != t.n_steps:
            raise RecordError(f"trajectory {t.id!r}", "scores", f"{len(s)} for {t.n_steps} steps")
        flat += [float(x) for x in s]
        truth += row
        clusters += [t.id] * t.n_steps
    strata = position_strata(trajectories, key)
    res = stratified_auroc(flat, truth, strata)
    ci = None
    if res.auroc is not None:
        options = Resampling(n_resamples=n_resamples, confidence=confidence, seed=seed)
        lo, hi = stratified_auroc_ci(flat, truth, strata, clusters, options)
        ci = [lo, hi] if math.isfinite(lo) and math.isfinite(hi) else None
    pooled = auroc(flat, truth) if 0 < sum(truth) < len(truth) else None
    d = res.to_dict()
    return {
        "auroc_pooled": pooled,
        "auroc_within_position": res.auroc,
        "ci": ci,
        "n_steps": res.n,
        "n_pairs": res.n_pairs,
        "stratum_key": key,
        "per_position": d["strata"],
    }
