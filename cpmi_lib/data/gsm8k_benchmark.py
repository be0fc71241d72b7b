"""A ProcessBench-schema benchmark from real GSM8K text: gold solutions and copies with one
corrupted step, whose first wrong step is known exactly.

ProcessBench cannot be downloaded here, and GSM8K's model solutions say only whether the final
answer is right. GSM8K's reference solutions, though, mark every computed result with a calculator
annotation (``16 - 3 - 4 = <<16-3-4=9>>9``). Changing one marked result to a near miss
(`cpmi_lib.core.numbers.perturbations`) makes a solution whose first error is that step, while
the text around
it stays real: the later steps still use the right value (as a careless solver's might), so the
first error is exact and later steps are simply inconsistent, and ProcessBench's metric only
asks for the first. Each problem gives one untouched solution (label -1) and one corrupted copy
(label k); the last step states the final answer (``The answer is: x``) of the last marked result
as written, so a corruption of the last computation also makes the final answer wrong. Rows are
written in ProcessBench's schema, one JSON object a line, and read back with
`loaders.load_processbench`. A building block of the planned `real-smoke` preset (issue 12); the
data stay in ``../shared/data`` (or the cache), never in the repository.
"""

from __future__ import annotations

import json
import os
import random
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cpmi_lib.core.answers import answers_equivalent
from cpmi_lib.core.files import write_atomically
from cpmi_lib.core.numbers import perturbations
from cpmi_lib.core.trajectory import RecordError
from cpmi_lib.data.loaders import load_gsm8k_problems

#: A calculator annotation and the result the solution writes right after it.
_ANNOTATION = re.compile(r"<<(?P<expr>[^<>=]*)=(?P<value>[^<>]*)>>")


@dataclass(frozen=True)
class _Marked:
    """One step's text without annotations, and where its marked results are in that text."""

    text: str
    results: list[tuple[int, int]]  # (start, end) of each result written after an annotation


def _strip(step: str) -> _Marked:
    out, results, pos = [], [], 0
    length = 0
    for m in _ANNOTATION.finditer(step):
        before = step[pos : m.start()]
        out.append(before)
        length += len(before)
        value = m["value"].strip()
        pos = m.end()
        if value and step.startswith(value, pos):  # the written result equals the annotation's
            results.append((length, length + len(value)))
    out.append(step[pos:])
    return _Marked("".join(out), results)


def processbench_rows(
    gsm8k_file: str | os.PathLike[str],
    n_problems: int,
    *,
    seed: int = 0,
    errors: list[RecordError] | None = None,
) -> list[dict[str, Any]]:
    """ProcessBench-schema rows for the first `n_problems` usable problems of a GSM8K file: per
    problem the gold solution and one corrupted copy. A problem with no marked result written
    after its annotation cannot be corrupted and is skipped (not counted as a row); an invalid
    GSM8K row is skipped and appended to `errors` (`loaders.load_gsm8k_problems`)."""
    rng = random.Random(seed)
    rows: list[dict[str, Any]] = []
    problems = load_gsm8k_problems(  # a margin for problems without a usable mark
        gsm8k_file, keep_calculator=True, skip_invalid=True, errors=errors, limit=n_problems + 100
    )
    for traj in problems:
        if len(rows) >= 2 * n_problems:
            break
        marked = [_strip(s) for s in traj.steps]
        candidates = [(k, r) for k, m in enumerate(marked) for r in m.results]
        if not candidates or traj.gold_answer is None:
            continue
        k, (start, end) = rng.choice(candidates)
        right = marked[k].text[start:end]
        wrong = next(iter(perturbations(right, rng.randrange(2**31))), None)
        if wrong is None:
            continue
        steps = [m.text for m in marked]
        corrupted = list(steps)
        corrupted[k] = steps[k][:start] + wrong + steps[k][end:]
        # the last marked result is the solution's answer as written
        last_k, (ls, le) = max((kk, r) for kk, m in enumerate(marked) for r in m.results)
        as_written = steps[last_k][ls:le]
        for label, body in ((-1, steps), (k, corrupted)):
            stated = wrong if label == k and (k, start, end) == (last_k, ls, le) else as_written
            text = list(body)
            text[-1] = f"{text[-1]} The answer is: {stated}"
            rows.append(
                {
                    "id": f"{traj.id}-{'gold' if label == -1 else f'err{k}'}",
                    "generator": "gsm8k-reference" + ("" if label == -1 else "+corrupted"),
                    "problem": traj.question,
                    "steps": text,
                    "final_answer_correct": answers_equivalent(traj.gold_answer, stated),
                    "label": label,
                }
            )
    return rows


def write_processbench_file(
    gsm8k_file: str | os.PathLike[str], out: str | os.PathLike[str], n_problems: int, seed: int = 0
) -> Path:
    """`processbench_rows` written as JSONL to `out` (its stem is the subset's name)."""
    rows = processbench_rows(gsm8k_file, n_problems, seed=seed)
    if not rows:
        raise ValueError(f"{gsm8k_file}: no problem could be made into benchmark rows")
    return write_atomically(out, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
