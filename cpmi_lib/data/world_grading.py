"""Exact step truth for any solution of a world problem (for example one sampled from an LM).

The same parser that reads the gold chain reads the solution: step i is right when it states the
gold computation i exactly. Labels are prefix labels.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from cpmi_lib.core.trajectory import Trajectory
from cpmi_lib.data.world import STEP_RE, Problem


@dataclass(frozen=True)
class StepGrade:
    """Exact truth for a solution's steps against a problem's gold chain."""

    step_labels: list[bool]
    first_error: int | None
    final_correct: bool


def grade_steps(problem: Problem, steps: Sequence[str], final_answer: str | None) -> StepGrade:
    """Grade any solution of a world problem step by step.

    Step i is right when it states the gold computation i exactly (same operands, operation and
    result). Labels are prefix labels: False from the first wrong step on. When every step is right
    but the solution stops early or states a wrong answer, the error is in the answer line, which is
    no step: all labels are True and `first_error` is None (unknown as a step index).
    """
    gold = problem.computations
    labels: list[bool] = []
    ok = True
    for i, step in enumerate(steps):
        m = STEP_RE.match(step.strip())
        if ok:
            ok = (
                m is not None
                and i < len(gold)
                and (int(m["a"]), m["op"], int(m["b"]), int(m["c"]))
                == (gold[i].a, gold[i].op, gold[i].b, gold[i].c)
            )
        labels.append(ok)
    final_correct = final_answer is not None and final_answer.strip() == problem.answer
    if not all(labels):
        first_error: int | None = labels.index(False)
    elif len(steps) == len(gold) and final_correct:
        first_error = -1
    else:
        first_error = None
    return StepGrade(labels, first_error, final_correct)


def graded_trajectory(
    problem: Problem, steps: list[str], final_answer: str | None, tid: str, **metadata: Any
) -> Trajectory:
    """A solution of a world problem (e.g. sampled from an LM) with its exact step truth."""
    grade = grade_steps(problem, steps, final_answer)
    return Trajectory(
        id=tid,
        question=problem.question,
        steps=steps,
        gold_answer=problem.answer,
        final_answer=final_answer,
        step_labels=grade.step_labels,
        first_error=grade.first_error,
        source="arithmetic-world",
        metadata={
            "problem_id": problem.id,
            "split": problem.split,
            "n_steps": problem.n_steps,
            "final_correct": grade.final_correct,
            **metadata,
        },
    )
