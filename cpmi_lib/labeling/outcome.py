"""Outcome labels: every step of a trajectory gets its final answer's correctness (1.0 or 0.0).

The control of issue 21. They are free once the answers are graded: the policy's samples carry
``metadata["final_correct"]`` on both tracks (the embedded world grades every sample exactly,
`cpmi_lib.data.world_grading`; the hub checks the final answer against the gold with
`answers_equivalent`, `cpmi_lib.lm.sampling.sample_solutions`; Math-Shepherd's solutions are
graded the same way, `cpmi_lib.data.math_shepherd.graded`). A label source that scores no better
than these labels carries nothing beyond the outcome; within the steps of wrong answers they are
constant, so their AUROC there is 0.5 by construction.

Records are shaped like label files' and the position labeler's (``{"id", "method", "steps":
[{"value"}]}``), so `cpmi_lib.prm.targets.scores_for_trajectories(trajs, records, "value")` and
the ``mc_soft`` target read them like MC values.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from cpmi_lib.core.records import RecordError
from cpmi_lib.core.trajectory import Trajectory

METHOD = "outcome"
#: The step field the records hold (MC's, so `SCORE_FIELD["mc_soft"]` reads it).
SCORE_FIELD = "value"


#: The metadata field that holds whether a trajectory's final answer is right.
FINAL_CORRECT = "final_correct"


def final_correct(trajectory: Trajectory) -> bool:
    """`metadata["final_correct"]` as a bool (True, False, 1 or 0); missing or None (unknown) or
    any other value raises `RecordError` naming the trajectory and the field."""
    where = f"trajectory {trajectory.id!r}"
    field = f"metadata[{FINAL_CORRECT!r}]"
    if FINAL_CORRECT not in trajectory.metadata:
        raise RecordError(
            where, field, "missing: whether the final answer is right is unknown (grade it first)"
        )
    value = trajectory.metadata[FINAL_CORRECT]
    if value is None:
        raise RecordError(where, field, "is None: whether the final answer is right is unknown")
    if isinstance(value, bool | np.bool_):
        return bool(value)
    if isinstance(value, int | np.integer) and value in (0, 1):
        return bool(value)
    raise RecordError(where, field, f"must be a boolean (or 0/1), got {value!r}")


def outcome_label_records(trajectories: Sequence[Trajectory]) -> list[dict[str, Any]]:
    """One record per trajectory: every step valued 1.0 when its final answer is right, else
    0.0."""
    out = []
    for t in trajectories:
        v = 1.0 if final_correct(t) else 0.0
        out.append({"id": t.id, "method": METHOD, "steps": [{SCORE_FIELD: v}] * t.n_steps})
    return out
