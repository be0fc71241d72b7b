"""Public data sets (GSM8K, its model solutions, Math-Shepherd, ProcessBench) as `Trajectory` lists.

One loader per data set, each a row converter from the data set's schema to trajectories; the rows
are read and validated by `rows` (a Hub id and a local copy in the same schema go down one code
path; a malformed row raises `RecordError` naming file, line and field, or is skipped with
``skip_invalid=True``). `limit` caps the number of trajectories returned.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from cpmi_lib.core.answers import extract_final_answer
from cpmi_lib.core.paths import SHARED
from cpmi_lib.core.trajectory import (
    RecordError,
    Trajectory,
    first_error_from_labels,
    labels_from_first_error,
)
from cpmi_lib.data.rows import (
    convert_rows,
    iter_rows,
    optional_field,
    required_field,
    split_name,
    where_of,
)

# ----------------------------------------------------------------------------------------- GSM8K

#: The real GSM8K files (problems, and 4 labelled model solutions per test problem):
#: ``$CPMI_GSM8K_DIR``, else ``../shared/data/gsm8k`` beside the checkout (read-only; never copied
#: into the repository).
GSM8K_DIR = Path(os.environ.get("CPMI_GSM8K_DIR", SHARED / "data" / "gsm8k"))


_CALCULATOR = re.compile(r"<<.*?>>")
_ANSWER_LINE = re.compile(r"^[ \t]*A:", re.MULTILINE)


def _lines(text: str, keep_calculator: bool) -> list[str]:
    """Non-blank lines, stripped, with GSM8K calculator annotations ``<<expr=value>>`` removed."""
    if not keep_calculator:
        text = _CALCULATOR.sub("", text)
    return [line.strip() for line in text.split("\n") if line.strip()]


def _gsm8k_number(answer: str) -> str:
    """A GSM8K final answer without thousands separators (``1,000`` → ``1000``)."""
    return answer.replace(",", "").strip()


def load_gsm8k_problems(
    source: str | os.PathLike[str] = "openai/gsm8k",
    *,
    split: str = "test",
    config: str | None = "main",
    keep_calculator: bool = False,
    skip_invalid: bool = False,
    errors: list[RecordError] | None = None,
    limit: int | None = None,
) -> list[Trajectory]:
    """GSM8K reference solutions: the lines before ``#### answer`` are the (all correct) steps.

    Ids are ``gsm8k-{split}-{row}``, where a local file's split is its stem (``test.jsonl`` → test).
    """
    split = split_name(source, split)

    def convert(row: Mapping[str, Any], i: int, where: str) -> list[Trajectory]:
        question = required_field(row, "question", str, where)
        answer = required_field(row, "answer", str, where)
        solution, marker, final = answer.rpartition("####")
        if not marker:
            raise RecordError(where, "answer", "no '#### <final answer>' line")
        gold = _gsm8k_number(final)
        if not gold:
            raise RecordError(where, "answer", "nothing after '####'")
        steps = _lines(solution, keep_calculator)
        record = {
            "id": f"gsm8k-{split}-{i}",
            "question": question,
            "steps": steps,
            "gold_answer": gold,
            "final_answer": gold,
            "step_labels": [True] * len(steps),
            "first_error": -1,
            "source": "gsm8k",
        }
        return [Trajectory.from_dict(record, where)]

    return convert_rows(
        iter_rows(source, split=split, config=config),
        convert,
        where=where_of(source, split),
        skip_invalid=skip_invalid,
        errors=errors,
        limit=limit,
    )


#: The four solutions per question in GSM8K's `example_model_solutions.jsonl`.
GSM8K_SOLUTION_KEYS = ("6b_finetuning", "6b_verification", "175b_finetuning", "175b_verification")


def load_gsm8k_model_solutions(
    source: str | os.PathLike[str],
    *,
    keep_calculator: bool = False,
    skip_invalid: bool = False,
    errors: list[RecordError] | None = None,
    limit: int | None = None,
) -> list[Trajectory]:
    """GPT-3 solutions to the GSM8K test questions, four per question, right and wrong.

    Steps are the lines before the last ``A: x`` line (all lines when a truncated solution has
    none, in which case `final_answer` is None). Step correctness is unknown (`step_labels` and
    `first_error` are None); the solution's overall flag is `metadata["is_correct"]`. A row that
    fails validation is skipped as a whole (all four solutions).
    """

    def convert(row: Mapping[str, Any], i: int, where: str) -> list[Trajectory]:
        question = required_field(row, "question", str, where)
        ground_truth = required_field(row, "ground_truth", str, where)
        gold = extract_final_answer(ground_truth)
        if gold is None:
            raise RecordError(where, "ground_truth", "no 'A: <final answer>' line")
        records = []
        for key in GSM8K_SOLUTION_KEYS:
            entry = required_field(row, key, Mapping, where)
            solution = required_field(entry, "solution", str, where, parent=key)
            is_correct = required_field(entry, "is_correct", bool, where, parent=key)
            answer_lines = list(_ANSWER_LINE.finditer(solution))
            body = solution[: answer_lines[-1].start()] if answer_lines else solution
            record = {
                "id": f"gsm8k-sol-{i}-{key}",
                "question": question,
                "steps": _lines(body, keep_calculator),
                "gold_answer": _gsm8k_number(gold),
                "final_answer": extract_final_answer(solution),
                "step_labels": None,
                "first_error": None,
                "source": "gsm8k",
                "metadata": {"model": key, "is_correct": is_correct},
            }
            records.append(Trajectory.from_dict(record, f"{where} ({key})"))
        return records

    return convert_rows(
        iter_rows(source),
        convert,
        where=where_of(source, "train"),
        skip_invalid=skip_invalid,
        errors=errors,
        limit=limit,
    )


# ---------------------------------------------------------------------------------- Math-Shepherd

#: Math-Shepherd ends every step of `input` with this tag; `label` has '+' or '-' in its place.
STEP_TAG = "ки"
_FIRST_STEP = re.compile(r"step\s*1\s*:", re.IGNORECASE)
_STEP_PREFIX = re.compile(r"^\s*step\s*\d+\s*:\s*", re.IGNORECASE)


def load_math_shepherd(
    source: str | os.PathLike[str] = "peiyi9979/Math-Shepherd",
    *,
    split: str = "train",
    config: str | None = None,
    skip_invalid: bool = False,
    errors: list[RecordError] | None = None,
    limit: int | None = None,
) -> list[Trajectory]:
    """Math-Shepherd's automatically labelled solutions (GSM8K and MATH questions).

    The question is the text of `input` before its first ``Step 1:``; each step ends at a ``ки``
    tag and its label is the ``+``/``-`` at the tag's position in `label`. The ``Step k:`` prefix
    is stripped from each step, so that steps have the form of our own (one a line, unnumbered,
    see `cpmi_lib.core.text_format`); the last step keeps its ``The answer is: x``. Labels are the
    source's as given: a ``+`` may follow a ``-`` (a later step from which the right answer was
    still reached), and `first_error` is the first ``-``. Math-Shepherd gives no gold answer;
    `gold_answer` is the solution's final answer when its last step is labelled ``+`` (then the
    solution reached the gold answer), else None.

    Rows where a tag stands before ``Step 1:`` (a known annotation slip in the public data) or
    text follows the last tag raise `RecordError` on `input`; with ``skip_invalid`` they are
    skipped and counted.
    """
    split = split_name(source, split)

    def convert(row: Mapping[str, Any], i: int, where: str) -> list[Trajectory]:
        text = required_field(row, "input", str, where)
        label = required_field(row, "label", str, where)
        pieces = text.split(STEP_TAG)
        n_tags = len(pieces) - 1
        if n_tags == 0:
            raise RecordError(where, "input", f"no step tag {STEP_TAG!r}")
        if len(label) != len(text) - n_tags * (len(STEP_TAG) - 1):
            raise RecordError(
                where,
                "label",
                f"is not `input` with its {n_tags} {STEP_TAG!r} tags replaced by '+'/'-' "
                f"(length {len(label)}, expected {len(text) - n_tags * (len(STEP_TAG) - 1)})",
            )
        marks, position = [], 0
        for k, piece in enumerate(pieces[:-1]):
            position += len(piece)
            mark = label[position]
            if mark not in "+-":
                raise RecordError(
                    where, "label", f"expected '+' or '-' at step tag {k + 1}, found {mark!r}"
                )
            marks.append(mark)
            position += 1
        first = _FIRST_STEP.search(pieces[0])
        if first is None:
            if _FIRST_STEP.search(text):
                raise RecordError(where, "input", "a step tag stands before 'Step 1:'")
            raise RecordError(where, "input", "no 'Step 1:' marks the first step")
        if pieces[-1].strip():
            raise RecordError(where, "input", f"text after the last step tag: {pieces[-1]!r}")
        raw_steps = [pieces[0][first.start() :], *pieces[1:-1]]
        steps = [_STEP_PREFIX.sub("", step).strip() for step in raw_steps]
        for k, step in enumerate(steps):
            if not step:
                raise RecordError(where, "input", f"step {k + 1} is empty")
        question = pieces[0][: first.start()].strip()
        if not question:
            raise RecordError(where, "input", "no question before 'Step 1:'")
        labels = [mark == "+" for mark in marks]
        final = extract_final_answer(steps[-1])
        record = {
            "id": f"math-shepherd-{split}-{i}",
            "question": question,
            "steps": steps,
            "gold_answer": final if labels[-1] else None,
            "final_answer": final,
            "step_labels": labels,
            "first_error": first_error_from_labels(labels),
            "source": "math-shepherd",
            "metadata": {"task": row.get("task")},
        }
        return [Trajectory.from_dict(record, where)]

    return convert_rows(
        iter_rows(source, split=split, config=config),
        convert,
        where=where_of(source, split),
        skip_invalid=skip_invalid,
        errors=errors,
        limit=limit,
    )


# ----------------------------------------------------------------------------------- ProcessBench


def load_processbench(
    source: str | os.PathLike[str] = "Qwen/ProcessBench",
    *,
    split: str = "gsm8k",
    config: str | None = None,
    skip_invalid: bool = False,
    errors: list[RecordError] | None = None,
    limit: int | None = None,
) -> list[Trajectory]:
    """ProcessBench's human-labelled solutions; the subsets (gsm8k, math, olympiadbench, omnimath)
    are splits, and a local file's stem names its subset.

    `label` is the index of the first wrong step (-1: none), so `step_labels` are True before it
    and False from it on. ProcessBench gives no gold answer; `final_answer` is the one stated in
    the last step (usually ``\\boxed{x}``), and whether it is right is
    `metadata["final_answer_correct"]`.
    """
    split = split_name(source, split)

    def convert(row: Mapping[str, Any], i: int, where: str) -> list[Trajectory]:
        problem = required_field(row, "problem", str, where)
        steps = required_field(row, "steps", list, where)
        if not steps:
            raise RecordError(where, "steps", "no steps")
        first_error = required_field(row, "label", int, where)
        if not -1 <= first_error < len(steps):
            raise RecordError(
                where,
                "label",
                f"{first_error} is outside -1..{len(steps) - 1} ({len(steps)} steps)",
            )
        last = steps[-1] if steps and isinstance(steps[-1], str) else ""
        row_id = optional_field(row, "id", (str, int), where) or f"{split}-{i}"
        generator = optional_field(row, "generator", (str,), where)
        final_answer_correct = optional_field(row, "final_answer_correct", (bool,), where)
        record = {
            "id": f"processbench-{row_id}",
            "question": problem,
            "steps": steps,
            "gold_answer": None,
            "final_answer": extract_final_answer(last),
            "step_labels": labels_from_first_error(len(steps), first_error),
            "first_error": first_error,
            "source": "processbench",
            "metadata": {
                "subset": split,
                "generator": generator,
                "final_answer_correct": final_answer_correct,
            },
        }
        return [Trajectory.from_dict(record, where)]

    return convert_rows(
        iter_rows(source, split=split, config=config),
        convert,
        where=where_of(source, split),
        skip_invalid=skip_invalid,
        errors=errors,
        limit=limit,
    )
