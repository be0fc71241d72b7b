"""ProcessBench-style evaluation: does a PRM find the first wrong step of a solution?

The metric is pinned to ProcessBench's (Zheng et al., 2024): a PRM predicts the first step whose
probability of being correct falls below a threshold τ (-1: no such step). On one subset,
`acc_error` is the share of erroneous solutions whose predicted index equals the true first error
exactly, `acc_correct` the share of all-correct solutions predicted -1, and F1 their harmonic
mean. The headline is the UNWEIGHTED mean of the subsets' F1 (GSM8K, MATH, ... count equally,
whatever their sizes).

τ is a modelling choice that leaks if it is tuned on the evaluated data: `choose_threshold` is
meant for a dev split only, and the best τ on the evaluated set itself is available only as
`oracle_threshold_result`, labelled as an upper bound.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from scipy.stats import hmean

from cpmi_lib.core.intervals import Resampling, interval
from cpmi_lib.core.trajectory import Trajectory

#: Label of a result whose threshold was fixed before looking at the evaluated data.
GIVEN_LABEL = "given threshold"
#: Label of `oracle_threshold_result`: never to be reported as anything but an upper bound.
ORACLE_LABEL = "oracle threshold (upper bound, tuned on the evaluated set)"


def predict_first_error(step_probs: Sequence[float], threshold: float) -> int:
    """Index of the first step whose PRM probability is < `threshold`, else -1."""
    below = np.flatnonzero(_probs_array(step_probs) < _check_threshold(threshold))
    return int(below[0]) if len(below) else -1


def _check_threshold(threshold: float) -> float:
    """τ as a float; a NaN τ would silently predict 'no error' for every solution."""
    tau = float(threshold)
    if not math.isfinite(tau):
        raise ValueError(f"threshold must be a finite number, got {threshold!r}")
    return tau


def _probs_array(step_probs: Sequence[float], where: str = "step_probs") -> np.ndarray:
    """One solution's step probabilities, checked: a NaN would silently count as 'not below τ'."""
    probs = np.asarray(step_probs, dtype=float)
    if probs.ndim != 1 or len(probs) == 0:
        raise ValueError(f"{where} must be a non-empty list of step probabilities")
    bad = np.flatnonzero(~np.isfinite(probs))
    if len(bad):
        value = "NaN" if np.isnan(probs[bad[0]]) else f"{probs[bad[0]]:+}"
        raise ValueError(f"{where}[{int(bad[0])}] is {value} (not a finite probability)")
    return probs


def _check_probs(
    step_probs_by_subset: Mapping[str, Sequence[Sequence[float]]], *, allow_empty: bool
) -> None:
    """Every item has finite probabilities (errors name subset and item); an empty subset is
    refused unless `allow_empty` (evaluation reports its F1 as undefined, NaN)."""
    for name, probs in step_probs_by_subset.items():
        if len(probs) == 0 and not allow_empty:
            raise ValueError(f"subset {name!r} has no items, so no threshold can be chosen on it")
        for i, p in enumerate(probs):
            _probs_array(p, f"subset {name!r} item {i}: step probabilities")


def first_errors(trajectories: Iterable[Trajectory]) -> list[int]:
    """The `first_error` of each trajectory, as ground truth; unknown (None) is an error."""
    out = []
    for i, t in enumerate(trajectories):
        if t.first_error is None:
            raise ValueError(f"trajectory {i} ({t.id!r}) has an unknown first_error (None)")
        out.append(t.first_error)
    return out


# ------------------------------------------------------------------------------------ metrics


@dataclass(frozen=True)
class SubsetMetrics:
    """ProcessBench metrics of one subset.

    An empty side makes its accuracy undefined: with no erroneous items `acc_error` is NaN, with
    no all-correct items `acc_correct` is NaN, and F1 is then NaN too. It is neither 0 nor 1,
    because the subset says nothing about that half of the task. F1 is 0 when both accuracies
    are 0.
    """

    acc_error: float
    acc_correct: float
    f1: float
    n_error: int
    n_correct: int
    f1_ci: tuple[float, float] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "acc_error": self.acc_error,
            "acc_correct": self.acc_correct,
            "f1": self.f1,
            "f1_ci": list(self.f1_ci) if self.f1_ci is not None else None,
            "n_error": self.n_error,
            "n_correct": self.n_correct,
        }


def subset_metrics(pred: Sequence[int], truth: Sequence[int | None]) -> SubsetMetrics:
    """acc_error, acc_correct and their harmonic mean F1 for one subset (see `SubsetMetrics`)."""
    return _metrics(*_hits(pred, truth))


def _metrics(error_hits: np.ndarray, correct_hits: np.ndarray) -> SubsetMetrics:
    acc_error = float(error_hits.mean()) if len(error_hits) else math.nan
    acc_correct = float(correct_hits.mean()) if len(correct_hits) else math.nan
    return SubsetMetrics(
        acc_error=acc_error,
        acc_correct=acc_correct,
        f1=_f1(acc_error, acc_correct),
        n_error=len(error_hits),
        n_correct=len(correct_hits),
    )


def _hits(pred: Sequence[int], truth: Sequence[int | None]) -> tuple[np.ndarray, np.ndarray]:
    """Per-item exact-hit flags, split into (erroneous items, all-correct items)."""
    if len(pred) != len(truth):
        raise ValueError(f"{len(pred)} predictions for {len(truth)} ground-truth items")
    p = _index_array(pred, "predicted")
    t = _index_array(truth, "ground-truth")
    erroneous = t != -1
    return p[erroneous] == t[erroneous], p[~erroneous] == -1


def _index_array(indices: Sequence[int | None], what: str) -> np.ndarray:
    """First-error indices as an int array; None (unknown) or < -1 raise, naming the item."""
    for i, x in enumerate(indices):
        if x is None:
            raise ValueError(f"item {i}: {what} first error is unknown (None)")
        if isinstance(x, bool) or not isinstance(x, int | np.integer) or x < -1:
            raise ValueError(f"item {i}: {what} first error must be an int >= -1, got {x!r}")
    return np.asarray(indices, dtype=int).reshape(len(indices))


def _f1(acc_error: float, acc_correct: float) -> float:
    if math.isnan(acc_error) or math.isnan(acc_correct):
        return math.nan
    return float(hmean([acc_error, acc_correct]))  # 0 when either is 0


def _f1_along(error_hits: np.ndarray, correct_hits: np.ndarray, axis: int = -1) -> np.ndarray:
    """Vectorized F1 over bootstrap resamples of one subset's hit flags."""
    return hmean(np.stack([error_hits.mean(axis=axis), correct_hits.mean(axis=axis)]), axis=0)


# ----------------------------------------------------------------------------------- evaluate


@dataclass(frozen=True)
class ProcessBenchResult:
    """Per-subset metrics at one threshold and the headline (unweighted mean of subset F1).

    `label` says how the threshold was chosen; `headline_ci` and each subset's `f1_ci` are
    bootstrap intervals (NaN when the F1 itself is undefined).
    """

    threshold: float
    subsets: dict[str, SubsetMetrics]
    headline_f1: float
    headline_ci: tuple[float, float]
    label: str = GIVEN_LABEL
    confidence: float = 0.95

    def to_dict(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "threshold": self.threshold,
            "headline_f1": self.headline_f1,
            "headline_ci": list(self.headline_ci),
            "confidence": self.confidence,
            "subsets": {name: m.to_dict() for name, m in self.subsets.items()},
        }


def evaluate_processbench(
    step_probs_by_subset: Mapping[str, Sequence[Sequence[float]]],
    truth_by_subset: Mapping[str, Sequence[int | None]],
    threshold: float,
    *,
    n_resamples: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
    label: str = GIVEN_LABEL,
) -> ProcessBenchResult:
    """ProcessBench metrics of a PRM at `threshold`, per subset and as the unweighted headline.

    CIs: a stratified percentile bootstrap (`intervals.interval`, design ``strata``). Within each
    subset, erroneous and all-correct items are resampled separately, so every resample keeps the
    subset's design (its numbers of each kind) and its F1 stays defined; the headline resamples
    all subsets at once, each independently. If a subset's F1 is NaN (an empty side), so are the
    headline and both their CIs.
    """
    _check_subsets(step_probs_by_subset, truth_by_subset)
    _check_probs(step_probs_by_subset, allow_empty=True)
    threshold = _check_threshold(threshold)
    options = Resampling(n_resamples=n_resamples, confidence=confidence, seed=seed)
    subsets: dict[str, SubsetMetrics] = {}
    strata: list[np.ndarray] = []
    for name, probs in step_probs_by_subset.items():
        truth = truth_by_subset[name]
        _check_lengths(name, probs, truth)
        error_hits, correct_hits = _hits([predict_first_error(p, threshold) for p in probs], truth)
        m = _metrics(error_hits, correct_hits)
        if math.isnan(m.f1):
            ci = (math.nan, math.nan)
        else:
            strata += [error_hits, correct_hits]
            ci = interval(_f1_along, (error_hits, correct_hits), options, design="strata")
        subsets[name] = replace(m, f1_ci=ci)

    headline = float(np.mean([m.f1 for m in subsets.values()]))
    if math.isnan(headline):
        headline_ci = (math.nan, math.nan)
    else:

        def mean_f1(*hits: np.ndarray, axis: int = -1) -> np.ndarray:
            pairs = zip(hits[::2], hits[1::2], strict=True)
            return np.mean([_f1_along(e, c, axis=axis) for e, c in pairs], axis=0)

        headline_ci = interval(mean_f1, strata, options, design="strata")
    return ProcessBenchResult(
        threshold=float(threshold),
        subsets=subsets,
        headline_f1=headline,
        headline_ci=headline_ci,
        label=label,
        confidence=confidence,
    )


def choose_threshold(
    step_probs_by_subset: Mapping[str, Sequence[Sequence[float]]],
    truth_by_subset: Mapping[str, Sequence[int | None]],
    grid: Sequence[float] | None = None,
) -> float:
    """The τ maximizing the headline F1 on the data it is given; ties go to the smallest τ.

    Give it the DEV split only, never the split that will be evaluated at the returned τ: tuning
    on the evaluated set inflates the score (that number is `oracle_threshold_result`, an upper
    bound). Default grid: 0.01, 0.02, ..., 0.99 plus the midpoints between consecutive distinct
    step probabilities, so every distinct prediction pattern the data allows is tried.
    """
    _check_subsets(step_probs_by_subset, truth_by_subset)
    _check_probs(step_probs_by_subset, allow_empty=False)
    taus = _grid(step_probs_by_subset) if grid is None else np.unique(np.asarray(grid, float))
    if len(taus) == 0 or np.isnan(taus).any():
        raise ValueError("threshold grid must be non-empty and free of NaN")
    f1s = []
    for name, probs in step_probs_by_subset.items():
        truth = truth_by_subset[name]
        _check_lengths(name, probs, truth)
        f1 = _f1_by_threshold(probs, truth, taus)
        if np.isnan(f1).all():
            raise ValueError(
                f"subset {name!r}: F1 is undefined (it has no erroneous or no all-correct items), "
                "so no threshold can be chosen on it"
            )
        f1s.append(f1)
    headline = np.mean(f1s, axis=0)
    return float(taus[int(np.argmax(headline))])  # argmax: first (smallest τ) of ties


def oracle_threshold_result(
    step_probs_by_subset: Mapping[str, Sequence[Sequence[float]]],
    truth_by_subset: Mapping[str, Sequence[int | None]],
    grid: Sequence[float] | None = None,
    *,
    n_resamples: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
) -> ProcessBenchResult:
    """The best headline on the evaluated set itself: an UPPER BOUND, labelled `ORACLE_LABEL`.

    Its CIs ignore the selection of τ and are therefore optimistic too.
    """
    tau = choose_threshold(step_probs_by_subset, truth_by_subset, grid)
    return evaluate_processbench(
        step_probs_by_subset,
        truth_by_subset,
        tau,
        n_resamples=n_resamples,
        confidence=confidence,
        seed=seed,
        label=ORACLE_LABEL,
    )


def _grid(step_probs_by_subset: Mapping[str, Sequence[Sequence[float]]]) -> np.ndarray:
    distinct = np.unique(
        np.concatenate([np.asarray(p, float) for ps in step_probs_by_subset.values() for p in ps])
    )
    midpoints = (distinct[:-1] + distinct[1:]) / 2
    return np.unique(np.concatenate([np.arange(1, 100) / 100, midpoints]))


def _f1_by_threshold(
    probs: Sequence[Sequence[float]], truth: Sequence[int | None], taus: np.ndarray
) -> np.ndarray:
    """One subset's F1 at every τ, from each item's running minimum of step probabilities.

    The first step below τ is the first whose running minimum is below τ, and the running
    minimum never increases, so the predicted index is the number of steps with minimum >= τ.
    """
    t = _index_array(truth, "ground-truth")
    erroneous = t != -1
    if erroneous.all() or not erroneous.any():
        return np.full(len(taus), np.nan)
    preds = np.empty((len(probs), len(taus)), dtype=int)
    for i, p in enumerate(probs):
        running_min = np.minimum.accumulate(_probs_array(p))
        n_ok = (running_min[:, None] >= taus[None, :]).sum(axis=0)
        preds[i] = np.where(n_ok == len(p), -1, n_ok)
    acc_error = (preds[erroneous] == t[erroneous, None]).mean(axis=0)
    acc_correct = (preds[~erroneous] == -1).mean(axis=0)
    return hmean(np.stack([acc_error, acc_correct]), axis=0)


def _check_subsets(probs: Mapping[str, Any], truth: Mapping[str, Any]) -> None:
    if set(probs) != set(truth):
        raise ValueError(
            f"subsets differ: step probabilities for {sorted(probs)}, truth for {sorted(truth)}"
        )
    if not probs:
        raise ValueError("no subsets to evaluate")


def _check_lengths(name: str, probs: Sequence[Any], truth: Sequence[Any]) -> None:
    if len(probs) != len(truth):
        raise ValueError(
            f"subset {name!r}: {len(probs)} items with probabilities, {len(truth)} truths"
        )
    for i, (p, t) in enumerate(zip(probs, truth, strict=True)):
        if isinstance(t, int | np.integer) and t >= len(p):
            raise ValueError(
                f"subset {name!r} item {i}: first error {t} but only {len(p)} step probabilities"
            )
