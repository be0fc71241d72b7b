"""One problem to look at step by step: a policy sample picked by index or problem id, and which of
its steps are truly right where that is known (exactly, on the embedded track)."""

from __future__ import annotations

from cpmi_lib.core.trajectory import Trajectory, read_trajectories
from cpmi_lib.experiment.stages import Experiment


def example(exp: Experiment, index: int = 0, problem_id: str | None = None) -> Trajectory:
    """A training sample of the policy to explore step by step: the `index`-th one with a
    wrong final answer or, given `problem_id`, that problem's first wrong sample (else its
    first sample). Its exact first error is known on the embedded track only."""
    trajs = read_trajectories(exp.policy_samples("train"))
    if problem_id is not None:
        mine = [t for t in trajs if t.metadata["problem_id"] == problem_id]
        if not mine:
            raise KeyError(
                f"problem_id {problem_id!r} is not among the {len(trajs)} training samples' "
                f"problems (e.g. {trajs[0].metadata['problem_id']!r})"
            )
        return next((t for t in mine if not t.metadata["final_correct"]), mine[0])
    wrong = [t for t in trajs if not t.metadata["final_correct"]]
    if not 0 <= index < len(wrong):
        raise IndexError(
            f"problem_index {index}: the policy got {len(wrong)} of {len(trajs)} training "
            f"samples wrong; choose 0..{len(wrong) - 1}"
        )
    return wrong[index]


def truly_right(first_error: int | None, n_steps: int) -> list[bool | None]:
    """Per step, whether it is right (before the first error, or every step when there is
    none); None throughout when the first error is unknown (the hub, or a problem of your own)."""
    return [
        None if first_error is None else (first_error == -1 or i < first_error)
        for i in range(n_steps)
    ]
