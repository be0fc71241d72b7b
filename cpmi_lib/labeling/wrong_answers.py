"""AUROC within wrong answers: does a label source locate the error, or only know the outcome?

Among the steps of trajectories whose final answer is wrong, the outcome is constant, so a label
source that copies the final answer's correctness (constant within a trajectory, the same value
for every wrong answer) ties every pair and scores exactly 0.5 there; a source must rank the
steps before the first error above the steps from it on to score higher.

Position still helps there: with prefix labels later steps are more often wrong, so a score that
falls with the step index beats 0.5 without locating anything. So the AUROC is reported twice
(see measured-facts, "Stratified AUROC"):

- pooled over all steps of wrong-answer trajectories;
- within (step index, number of steps) cells among them, pair-weighted
  (`cpmi_lib.core.roc.stratified_auroc`), where a function of position alone scores 0.5 too.

Both intervals resample whole trajectories (`stratified_auroc_ci`; the pooled one is the same
with a single stratum), because the steps of one trajectory are dependent.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from cpmi_lib.core.intervals import Resampling
from cpmi_lib.core.records import RecordError
from cpmi_lib.core.roc import stratified_auroc, stratified_auroc_ci
from cpmi_lib.core.trajectory import Trajectory
from cpmi_lib.labeling.outcome import final_correct
from cpmi_lib.labeling.position import Labels, position_strata, reference_labels


class UndefinedAUROC(ValueError):
    """No wrong answers, or their steps all of one class: nothing to rank (not a bad input)."""


def wrong_answer_trajectories(trajectories: Sequence[Trajectory]) -> list[Trajectory]:
    """The trajectories whose final answer is wrong, in order (`final_correct` is False)."""
    return [t for t in trajectories if not final_correct(t)]


@dataclass(frozen=True)
class WrongAnswerAUROC:
    """AUROC of a step score against the step truth among wrong-answer trajectories.

    `value`/`ci`: pooled over their steps; `within_position`/`within_position_ci`: within
    (step index, number of steps) cells, pair-weighted. `within_position` is None when no cell
    holds both a correct and a wrong step; a CI is None when some resample has no pair to rank
    (too few trajectories; a warning says how many). Nothing here is NaN.
    """

    value: float
    ci: tuple[float, float] | None
    n_steps: int
    n_trajectories: int
    n_pairs: int
    within_position: float | None
    within_position_ci: tuple[float, float] | None
    n_pairs_within_position: int
    n_right_answers_excluded: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "auroc": self.value,
            "ci": list(self.ci) if self.ci is not None else None,
            "n_steps": self.n_steps,
            "n_trajectories": self.n_trajectories,
            "n_pairs": self.n_pairs,
            "auroc_within_position": self.within_position,
            "within_position_ci": (
                list(self.within_position_ci) if self.within_position_ci is not None else None
            ),
            "n_pairs_within_position": self.n_pairs_within_position,
            "n_right_answers_excluded": self.n_right_answers_excluded,
        }


def wrong_answer_auroc(
    trajectories: Sequence[Trajectory],
    scores: Sequence[Sequence[float]],
    labels: Labels | None = None,
    options: Resampling | None = None,
) -> WrongAnswerAUROC:
    """AUROC of per-step `scores` (higher = more likely correct) against 0/1 step truth (default:
    each trajectory's exact `step_labels`; `labels` as in `position.reference_labels`) among
    the steps of trajectories whose `final_correct` is False (module docs).

    `scores` is aligned with `trajectories` (one list per trajectory, one score per step; right
    answers' scores are checked but not used). Raises ValueError when there is no wrong answer,
    when their steps hold only one class (the pooled AUROC is undefined) or on non-finite
    scores; `RecordError` on a misaligned score list or an unknown `final_correct`.
    """
    if len(scores) != len(trajectories):
        raise ValueError(f"{len(scores)} score lists for {len(trajectories)} trajectories")
    wrong = [final_correct(t) is False for t in trajectories]
    for t, s in zip(trajectories, scores, strict=True):
        if len(s) != t.n_steps:
            raise RecordError(f"trajectory {t.id!r}", "scores", f"{len(s)} for {t.n_steps} steps")
    chosen = [t for t, w in zip(trajectories, wrong, strict=True) if w]
    if not chosen:
        raise UndefinedAUROC(
            f"none of the {len(trajectories)} trajectories has a wrong final answer: the AUROC "
            "within wrong answers is undefined"
        )
    if labels is None or isinstance(labels, Mapping):
        rows = reference_labels(chosen, labels)
    else:
        if len(labels) != len(trajectories):
            raise ValueError(
                f"labels has {len(labels)} entries for {len(trajectories)} trajectories"
            )
        rows = reference_labels(chosen, [x for x, w in zip(labels, wrong, strict=True) if w])
    flat = np.asarray(
        [float(x) for s, w in zip(scores, wrong, strict=True) if w for x in s], dtype=float
    )
    if not np.isfinite(flat).all():
        raise ValueError("scores of wrong-answer trajectories must be finite numbers")
    truth = [y for row in rows for y in row]
    clusters = [t.id for t in chosen for _ in range(t.n_steps)]
    if len(set(clusters)) != len(chosen):
        raise ValueError("trajectory ids must be unique: they are the bootstrap's clusters")
    n_pos = sum(truth)
    if n_pos in (0, len(truth)):
        only = "correct" if n_pos else "wrong"
        raise UndefinedAUROC(
            f"all {len(truth)} steps of the {len(chosen)} wrong-answer trajectories are {only}: "
            "the AUROC within wrong answers is undefined"
        )
    opts = options or Resampling()
    pooled_strata = [0] * len(truth)
    pooled = stratified_auroc(flat, truth, pooled_strata)
    assert pooled.auroc is not None  # both classes present
    cells = position_strata(chosen, "index_and_length")
    within = stratified_auroc(flat, truth, cells)
    within_ci = None
    if within.auroc is not None:
        within_ci = _finite(stratified_auroc_ci(flat, truth, cells, clusters, opts))
    return WrongAnswerAUROC(
        value=float(pooled.auroc),
        ci=_finite(stratified_auroc_ci(flat, truth, pooled_strata, clusters, opts)),
        n_steps=len(truth),
        n_trajectories=len(chosen),
        n_pairs=pooled.n_pairs,
        within_position=within.auroc,
        within_position_ci=within_ci,
        n_pairs_within_position=within.n_pairs,
        n_right_answers_excluded=len(trajectories) - len(chosen),
    )


def _finite(ci: tuple[float, float]) -> tuple[float, float] | None:
    """A CI, or None where a resample left it undefined (NaN; `interval` has warned)."""
    lo, hi = ci
    return (float(lo), float(hi)) if math.isfinite(lo) and math.isfinite(hi) else None
