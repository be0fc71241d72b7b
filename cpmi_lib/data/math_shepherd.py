"""Math-Shepherd as the PRMs' training data, as in the paper: its solutions with gold answers
attached (split into train and dev by question in `tracks.HubTrack.prm_data`), its ``+``/``-``
step labels kept as the reference that CPMI's and MC's labels are scored against.

Math-Shepherd gives no gold answer, and CPMI needs one. A question's gold comes from the problems
data set when the question is there (GSM8K's train split holds Math-Shepherd's GSM8K questions),
else from any of its solutions whose last step is labelled ``+`` (Math-Shepherd labels a last step
``+`` when its answer is the gold one; `loaders.load_math_shepherd`). A solution whose question
has neither is dropped and counted, never guessed.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any

from cpmi_lib.core.answers import answers_equivalent
from cpmi_lib.core.text_format import ANSWER_FORMAT
from cpmi_lib.core.trajectory import RecordError, Trajectory
from cpmi_lib.data.loaders import STEP_TAG, load_math_shepherd


@dataclass(frozen=True)
class ShepherdReport:
    """What became of Math-Shepherd's rows on the way to training trajectories."""

    rows_read: int  # valid rows (solutions)
    invalid_rows: int  # skipped as malformed (`RecordError`, file, line and field logged)
    no_gold: int  # dropped: no gold answer could be attached to the question
    kept: int

    def to_dict(self) -> dict[str, int]:
        return asdict(self)


def attach_gold_answers(
    solutions: Sequence[Trajectory], known: Mapping[str, str]
) -> tuple[list[Trajectory], int]:
    """`solutions` with their question's gold answer (`known[question]`, else the final answer
    of a solution of the same question whose last step is ``+``) and `metadata["problem_id"]`,
    and how many had none. Grading the final answers (`graded`) is left to the solutions used:
    math-verify on all of Math-Shepherd's 445k rows would take long."""
    from_labels: dict[str, str] = {}
    for t in solutions:
        if t.gold_answer is not None:  # the loader's: the last step is '+'
            from_labels.setdefault(t.question, t.gold_answer)
    kept, dropped = [], 0
    for t in solutions:
        gold = known.get(t.question) or from_labels.get(t.question)
        if gold is None:
            dropped += 1
            continue
        meta = {**t.metadata, "problem_id": question_id(t.question)}
        kept.append(replace(t, gold_answer=gold, metadata=meta))
    return kept, dropped


def graded(solutions: Sequence[Trajectory]) -> list[Trajectory]:
    """Solutions with `metadata["final_correct"]`: their final answer checked against the gold
    (math-verify, as for the policy's samples)."""
    out = []
    for t in solutions:
        if t.gold_answer is None:
            raise ValueError(f"solution {t.id!r} has no gold answer to grade against")
        correct = t.final_answer is not None and answers_equivalent(t.gold_answer, t.final_answer)
        out.append(replace(t, metadata={**t.metadata, "final_correct": correct}))
    return out


def question_id(question: str) -> str:
    """A stable id of a question: solutions of one question share it (`problem_id`)."""
    return "q" + hashlib.sha256(question.encode()).hexdigest()[:12]


def load_training_solutions(
    source: str | os.PathLike[str],
    known: Mapping[str, str],
    *,
    config: str | None = None,
    errors: list[RecordError] | None = None,
) -> tuple[list[Trajectory], ShepherdReport]:
    """Every valid Math-Shepherd solution with a gold answer attached, and the counts of what
    was skipped (malformed rows are skipped alone, each logged with file, line and field)."""
    errors = [] if errors is None else errors
    before = len(errors)
    solutions = load_math_shepherd(source, config=config, skip_invalid=True, errors=errors)
    kept, no_gold = attach_gold_answers(solutions, known)
    report = ShepherdReport(len(solutions), len(errors) - before, no_gold, len(kept))
    return kept, report


def to_math_shepherd_rows(solutions: Sequence[Trajectory]) -> list[dict[str, Any]]:
    """Solutions with step labels as rows of Math-Shepherd's schema (``input`` with a ``ки`` tag
    after each ``Step k:``, ``label`` with ``+``/``-`` in the tags' places, ``task``): local
    files in its schema, for tests and offline runs. Raises on a solution without step labels or
    with a tag in its text. A final answer is stated at the end of the last step, as there."""
    rows = []
    for t in solutions:
        if t.step_labels is None:
            raise ValueError(f"trajectory {t.id!r} has no step labels to write as '+'/'-'")
        if any(STEP_TAG in s for s in (t.question, *t.steps)):
            raise ValueError(f"trajectory {t.id!r} holds the step tag {STEP_TAG!r} in its text")
        head = f"{t.question} "
        texts = list(t.steps)
        if t.final_answer is not None:  # Math-Shepherd's last step states the answer
            texts[-1] = f"{texts[-1]} {ANSWER_FORMAT.format(answer=t.final_answer)}"
        steps = [f"Step {k}: {s} " for k, s in enumerate(texts, 1)]
        marks = ["+" if ok else "-" for ok in t.step_labels]
        rows.append(
            {
                "input": head + "".join(s + STEP_TAG + "\n" for s in steps),
                "label": head + "".join(s + m + "\n" for s, m in zip(steps, marks, strict=True)),
                "task": t.source or "local",
            }
        )
    return rows
