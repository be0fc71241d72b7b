"""Wrong solutions of world problems with exactly one error of a known kind at a known step.

Four kinds of error: a *slip* (a wrong result), a wrong *operand* (another number of the story), a
wrong *operation* and a *skip* (a step left out). Every step after the error continues consistently
from the wrong value, as a real solver would, so `first_error` and `step_labels` are exact.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Literal

from cpmi_lib.core.trajectory import Trajectory, labels_from_first_error
from cpmi_lib.data.world import Computation, Problem, apply

ErrorKind = Literal["slip", "operand", "operation", "skip"]
ERROR_KINDS: tuple[ErrorKind, ...] = ("slip", "operand", "operation", "skip")


def _continue_chain(problem: Problem, start: int, value: int) -> list[Computation] | None:
    """Apply the gold operations from `start` on to a (wrong) value; None if it leaves the world."""
    out = []
    for comp in problem.computations[start:]:
        c = apply(comp.op, value, comp.b)
        if c is None:
            return None
        out.append(Computation(value, comp.op, comp.b, c))
        value = c
    return out


def _corrupt_step(
    rng: random.Random, problem: Problem, k: int, kind: ErrorKind
) -> list[Computation] | None:
    """The computations of a solution whose first error, of `kind`, is at step k."""
    gold = list(problem.computations)
    comp = gold[k]
    if kind == "skip":
        if k >= len(gold) - 1:
            return None
        prev = gold[k - 1].c if k > 0 else None
        if prev is None:
            return None  # the first step sets the starting value; skipping it has no meaning
        rest = _continue_chain(problem, k + 1, prev)
        return None if rest is None else gold[:k] + rest
    if kind == "slip":
        deltas = [-10, -2, -1, 1, 2, 10]
        rng.shuffle(deltas)
        for d in deltas:
            wrong = Computation(comp.a, comp.op, comp.b, comp.c + d)
            if wrong.c > 0:
                break
        else:
            return None
    elif kind == "operand":
        candidates = sorted({n for n in problem.story_numbers if n != comp.b})
        rng.shuffle(candidates)
        for b in candidates:
            c = apply(comp.op, comp.a, b)
            if c is not None:
                wrong = Computation(comp.a, comp.op, b, c)
                break
        else:
            return None
    elif kind == "operation":
        ops = [o for o in ("+", "-", "*", "/") if o != comp.op]
        rng.shuffle(ops)
        for op in ops:
            c = apply(op, comp.a, comp.b)
            if c is not None and c != comp.c:
                wrong = Computation(comp.a, op, comp.b, c)  # type: ignore[arg-type]
                break
        else:
            return None
    else:
        raise ValueError(f"unknown error kind {kind!r}")
    rest = _continue_chain(problem, k + 1, wrong.c)
    return None if rest is None else gold[:k] + [wrong] + rest


def corrupt(
    problem: Problem,
    rng: random.Random,
    kinds: Sequence[ErrorKind] = ERROR_KINDS,
    position: int | None = None,
    max_tries: int = 100,
) -> Trajectory | None:
    """A wrong solution with exactly one error of a known kind; None if none can be made.

    Steps after the error continue consistently from the wrong value, so the final answer is wrong
    and the first error is exact.
    """
    for _ in range(max_tries):
        kind = rng.choice(list(kinds))
        k = position if position is not None else rng.randrange(problem.n_steps)
        comps = _corrupt_step(rng, problem, k, kind)
        # The error must show at step k (skipping one of two identical operations would not).
        if (
            comps is None
            or comps[k] == problem.computations[k]
            or str(comps[-1].c) == problem.answer
        ):
            continue
        steps = [c.render(problem.name, problem.obj) for c in comps]
        return Trajectory(
            id=f"{problem.id}-err-{kind}-{k}",
            question=problem.question,
            steps=steps,
            gold_answer=problem.answer,
            final_answer=str(comps[-1].c),
            step_labels=labels_from_first_error(len(steps), k),
            first_error=k,
            source="arithmetic-world",
            metadata={
                "problem_id": problem.id,
                "split": problem.split,
                "n_steps": problem.n_steps,
                "kind": "corrupted",
                "error_kind": kind,
            },
        )
    return None
