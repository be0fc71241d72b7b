"""Best-of-N: how much does a PRM gain by choosing among N sampled solutions?

Each problem has a pool of K sampled solutions. Every selector looks at the FIRST n of the pool,
so the curves for different n, different selectors and different PRMs (pools that share the
samples, scored by another PRM) are paired: they differ only in the choice, never in the samples.
That is what makes McNemar tests between them valid (`stats.mcnemar_test`, `compare`).

Selectors return the index of the chosen candidate in the pool; the problem counts as solved if
that candidate is `correct`. Solutions without a final answer abstain from votes.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal, cast, get_args

import numpy as np
import pandas as pd

from cpmi_lib.core.intervals import Resampling, interval
from cpmi_lib.core.stats import McNemarResult, mcnemar_test
from cpmi_lib.core.trajectory import Trajectory

log = logging.getLogger(__name__)

Aggregation = Literal["min", "prod", "last", "mean"]
AGGREGATIONS: tuple[str, ...] = get_args(Aggregation)
DEFAULT_METHODS = (
    "prm:min",
    "prm:prod",
    "prm:last",
    "prm:mean",
    "prm-vote:min",
    "majority",
    "random",
    "pass@n",
)
SameAnswer = Callable[[str, str], bool]


@dataclass(frozen=True)
class Candidate:
    """One sampled solution: its final answer (None: none stated), whether it is right, and its
    per-step PRM probabilities."""

    final_answer: str | None
    correct: bool
    step_probs: list[float]

    def __post_init__(self) -> None:
        if not self.step_probs:
            raise ValueError("a candidate needs at least one step probability")
        if any(math.isnan(p) for p in self.step_probs):
            raise ValueError(f"step_probs contain NaN: {self.step_probs}")

    @classmethod
    def from_trajectory(
        cls, trajectory: Trajectory, step_probs: Sequence[float], correct: bool | None = None
    ) -> Candidate:
        """A candidate from a sampled trajectory; `correct` defaults to its final answer being
        equivalent to its gold answer (math-verify)."""
        if len(step_probs) != trajectory.n_steps:
            raise ValueError(
                f"trajectory {trajectory.id!r}: {len(step_probs)} step probabilities for "
                f"{trajectory.n_steps} steps"
            )
        if correct is None:
            if trajectory.gold_answer is None:
                raise ValueError(
                    f"trajectory {trajectory.id!r} has no gold answer: pass `correct` explicitly"
                )
            from cpmi_lib.core.answers import (
                answers_equivalent,  # math-verify: import only when used
            )

            correct = answers_equivalent(trajectory.gold_answer, trajectory.final_answer)
        return cls(trajectory.final_answer, bool(correct), list(step_probs))


@dataclass(frozen=True)
class Pool:
    """The K sampled solutions of one problem, in sampling order (selectors use a prefix)."""

    problem_id: str
    candidates: list[Candidate] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.candidates)

    def __getitem__(self, i: int) -> Candidate:
        return self.candidates[i]


def full_pools(
    trajs: Sequence[Trajectory], probs: Sequence[Sequence[float]], n: int, what: str
) -> list[Pool]:
    """The scored samples as one pool per problem (in sampling order), keeping the problems with
    at least `n` candidates. A sample with no step is not a trajectory (`sample_solutions` counts
    and drops it), so a problem can fall short of the largest N: it is left out of every N (the
    curves stay paired), counted and logged. `what` names the pool in messages."""
    pools: dict[str, list[Candidate]] = {}
    for t, p in zip(trajs, probs, strict=True):
        correct = bool(t.metadata["final_correct"])
        pools.setdefault(t.metadata["problem_id"], []).append(
            Candidate.from_trajectory(t, p, correct=correct)
        )
    full = [Pool(k, v) for k, v in pools.items() if len(v) >= n]
    if len(full) < len(pools):
        log.warning(
            "Best-of-N (%s pool): %d of %d problems have fewer than %d samples with steps and "
            "are left out",
            what,
            len(pools) - len(full),
            len(pools),
            n,
        )
    if not full:
        raise ValueError(
            f"Best-of-N ({what} pool): no problem has {n} samples with "
            "steps; the policy writes no parsable steps"
        )
    return full


# -------------------------------------------------------------------------------- aggregation


def aggregate(step_probs: Sequence[float], how: Aggregation) -> float:
    """One solution score from its step probabilities.

    ``min``: as good as the weakest step; ``prod``: the probability that every step is right if
    steps were independent; ``last``: the PRM's view after the whole solution; ``mean``: average.
    """
    if len(step_probs) == 0:
        raise ValueError("cannot aggregate an empty list of step probabilities")
    probs = np.asarray(step_probs, dtype=float)
    if how == "min":
        return float(probs.min())
    if how == "prod":
        return float(np.prod(probs))
    if how == "last":
        return float(probs[-1])
    if how == "mean":
        return float(probs.mean())
    raise ValueError(f"unknown aggregation {how!r}; known: {AGGREGATIONS}")


# ---------------------------------------------------------------------------------- selectors


def select_best(pool: Pool, n: int, how: Aggregation) -> int:
    """Index of the best-scoring of the first `n` candidates; ties go to the lowest index."""
    scores = [aggregate(c.step_probs, how) for c in _prefix(pool, n)]
    return int(np.argmax(scores))  # argmax returns the first maximum


def prm_weighted_vote(
    pool: Pool, n: int, how: Aggregation, same_answer: SameAnswer | None = None
) -> int:
    """PRM-weighted vote over the first `n`: the answer whose summed score is largest.

    Returns the index of the first candidate giving the winning answer. Answers are grouped as
    in `majority_vote`; ties between answers go to the one seen first. If no candidate states an
    answer, the first candidate (index 0) is returned.
    """
    candidates = _prefix(pool, n)
    weights = [aggregate(c.step_probs, how) for c in candidates]
    return _vote(candidates, weights, same_answer)


def majority_vote(pool: Pool, n: int, same_answer: SameAnswer | None = None) -> int:
    """Self-consistency over the first `n`: the most frequent answer (ties: seen first).

    Answers are the same when `same_answer(a, b)` says so; the default compares the strings after
    `strip()`. With a custom relation, each answer joins the first group whose first answer it
    matches (greedy, in sampling order), so the relation need not be transitive. Returns the
    index of the first candidate giving the winning answer; index 0 if none states an answer.
    """
    candidates = _prefix(pool, n)
    return _vote(candidates, [1.0] * len(candidates), same_answer)


def random_choice(pool: Pool, n: int, rng: np.random.Generator) -> int:
    """A uniformly random one of the first `n` (the no-selection baseline)."""
    _prefix(pool, n)
    return int(rng.integers(n))


def oracle(pool: Pool, n: int) -> bool:
    """pass@n: whether any of the first `n` candidates is correct (the ceiling of selection)."""
    return any(c.correct for c in _prefix(pool, n))


def _vote(candidates: list[Candidate], weights: list[float], same: SameAnswer | None) -> int:
    matches = same if same is not None else str.__eq__
    groups: list[tuple[str, int]] = []  # (representative answer, first index)
    totals: list[float] = []
    for i, (c, w) in enumerate(zip(candidates, weights, strict=True)):
        if c.final_answer is None:
            continue
        answer = c.final_answer.strip()
        for g, (rep, _) in enumerate(groups):
            if matches(rep, answer):
                totals[g] += w
                break
        else:
            groups.append((answer, i))
            totals.append(w)
    if not groups:
        return 0
    return groups[int(np.argmax(totals))][1]  # argmax: first group seen wins ties


def _prefix(pool: Pool, n: int) -> list[Candidate]:
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    if n > len(pool):
        raise ValueError(f"problem {pool.problem_id!r}: n={n} but the pool has {len(pool)}")
    return pool.candidates[:n]


# ------------------------------------------------------------------------------------- curves


def best_of_n_curves(
    pools: Sequence[Pool],
    ns: Sequence[int] = (1, 2, 4, 8, 16),
    methods: Sequence[str] = DEFAULT_METHODS,
    seed: int = 0,
    *,
    same_answer: SameAnswer | None = None,
    n_resamples: int = 2000,
    confidence: float = 0.95,
) -> pd.DataFrame:
    """Accuracy of each selection method at each n, with bootstrap CIs over problems.

    Methods: ``prm:<agg>`` (`select_best`), ``prm-vote:<agg>`` (`prm_weighted_vote`),
    ``majority``, ``random`` and ``pass@n`` (`oracle`), with <agg> one of `AGGREGATIONS`.
    Columns: method, n, accuracy, ci_low, ci_high, n_problems, and `correct`: the per-problem
    outcomes (a tuple of bools in pool order), kept so that methods, n's and PRMs can be
    compared with paired tests (`per_item_correct`, `compare`); drop it for a compact table.
    ``random`` draws from ``default_rng([seed, n])``: one n's draws do not depend on the others.
    """
    if not pools:
        raise ValueError("no pools to evaluate")
    for m in methods:
        _parse_method(m)
    options = Resampling(n_resamples=n_resamples, confidence=confidence, seed=seed)
    rows = []
    for n in ns:
        rng = np.random.default_rng([seed, n])
        for method in methods:
            correct = tuple(_solved(pool, n, method, rng, same_answer) for pool in pools)
            low, high = interval(np.mean, correct, options)
            rows.append(
                {
                    "method": method,
                    "n": int(n),
                    "accuracy": float(np.mean(correct)),
                    "ci_low": low,
                    "ci_high": high,
                    "n_problems": len(pools),
                    "correct": correct,
                }
            )
    return pd.DataFrame(rows)


def per_item_correct(curves: pd.DataFrame) -> dict[str, dict[int, list[bool]]]:
    """method -> n -> per-problem correctness, from a `best_of_n_curves` frame."""
    out: dict[str, dict[int, list[bool]]] = {}
    for row in curves.itertuples(index=False):
        out.setdefault(row.method, {})[int(row.n)] = list(row.correct)
    return out


def compare(
    curves_a: pd.DataFrame, a: str, curves_b: pd.DataFrame, b: str, n: int
) -> McNemarResult:
    """Exact McNemar test of method `a` (in `curves_a`) vs `b` (in `curves_b`) at the same n.

    Pass the same frame twice to compare two methods, or the frames of two PRMs scored on the
    same pools to compare PRMs.
    """
    return mcnemar_test(outcomes(curves_a, a, n), outcomes(curves_b, b, n))


def outcomes(curves: pd.DataFrame, method: str, n: int) -> list[bool]:
    """Per problem, whether `method` picked a right answer at `n` (what McNemar pairs)."""
    try:
        return per_item_correct(curves)[method][n]
    except KeyError:
        raise ValueError(f"no row for method {method!r} at n={n} in the curves") from None


def _parse_method(method: str) -> tuple[str, Aggregation]:
    """(kind, aggregation); the aggregation is unused ("min") for methods without PRM scores."""
    kind, _, how = method.partition(":")
    if kind in ("prm", "prm-vote") and how in AGGREGATIONS:
        return kind, cast(Aggregation, how)
    if method in ("majority", "random", "pass@n"):
        return method, "min"
    raise ValueError(
        f"unknown method {method!r}; known: prm:<agg>, prm-vote:<agg> (agg in {AGGREGATIONS}), "
        "majority, random, pass@n"
    )


def _solved(
    pool: Pool, n: int, method: str, rng: np.random.Generator, same: SameAnswer | None
) -> bool:
    kind, how = _parse_method(method)
    if kind == "pass@n":
        return oracle(pool, n)
    if kind == "prm":
        i = select_best(pool, n, how)
    elif kind == "prm-vote":
        i = prm_weighted_vote(pool, n, how, same)
    elif kind == "majority":
        i = majority_vote(pool, n, same)
    else:
        i = random_choice(pool, n, rng)
    return pool.candidates[i].correct
