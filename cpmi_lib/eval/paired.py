"""Paired bootstrap of the ProcessBench headline-F1 difference between two PRMs.

Two PRMs evaluated on the SAME benchmark items are compared item by item: every resample draws
one set of items and scores both PRMs on it, so the (strong) correlation between their hits
cancels out of the difference, as in a paired test. The metric is `processbench`'s: per subset,
F1 = harmonic mean of the exact first-error accuracy on erroneous items and the accuracy on
all-correct items; the headline is the unweighted mean over subsets.

Resampling design: within each subset, erroneous and all-correct items are drawn with
replacement separately, at their own sizes. That is `evaluate_processbench`'s design for the
headline CI (a benchmark fixes how many items of each kind a subset holds, as ProcessBench
balances them), and it keeps every resample's F1 defined: no resample loses a whole side.

Returned next to the difference:

- ``ci``: the percentile interval of the bootstrap differences;
- ``p_value``: two-sided, by inverting the percentile interval, with the +1 correction of
  Davison & Hinkley (1997, eq. 4.11): ``min(1, 2 * min(1 + #{d* <= 0}, 1 + #{d* >= 0}) / (B +
  1))`` for B resamples d*. It is small exactly when 0 lies far in one tail of the bootstrap
  distribution (p < 1 - confidence about when the CI excludes 0), and never 0 from a finite
  number of resamples. Two identical PRMs get p = 1;
- ``min_detectable_difference``: ``(z_{1-alpha/2} + z_power) * SE`` with SE the bootstrap
  standard deviation of the difference and alpha = 1 - confidence: the true difference this
  many items would detect with probability `power` (normal approximation, SE as observed). It
  is the convention of `cpmi_lib.core.power.mcnemar_min_detectable_difference`, so the F1 and
  Best-of-N tables state the same thing. The CI half-width (about 1.96 SE) is smaller: it is the
  difference that would be *just* significant, which a true difference of that size reaches
  only half the time. Identical PRMs have SE 0 and say nothing about power: the value is then
  None, with the SE (0.0) beside it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import stats as sps

from cpmi_lib.core.intervals import Resampling
from cpmi_lib.eval.processbench import _hits, _index_array, subset_metrics

#: Resamples drawn per batch (bounds memory: a batch holds batch x items indices).
_BATCH = 500


@dataclass(frozen=True)
class PairedF1Difference:
    """Headline F1(a) - F1(b) on the same items, with its paired-bootstrap CI, p and power.

    `n` is the number of items (all subsets), `n_by_subset` per subset; `se` the bootstrap
    standard deviation of the difference; see the module docs for `p_value` and
    `min_detectable_difference` (None when SE is 0).
    """

    difference: float
    ci: tuple[float, float]
    p_value: float
    n: int
    min_detectable_difference: float | None
    se: float
    f1_a: float
    f1_b: float
    n_by_subset: dict[str, int]
    n_resamples: int
    confidence: float
    power: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "difference": self.difference,
            "ci": list(self.ci),
            "p_value": self.p_value,
            "n": self.n,
            "min_detectable_difference": self.min_detectable_difference,
            "se": self.se,
            "f1_a": self.f1_a,
            "f1_b": self.f1_b,
            "n_by_subset": dict(self.n_by_subset),
            "n_resamples": self.n_resamples,
            "confidence": self.confidence,
            "power": self.power,
        }


def paired_f1_difference(
    truth_by_subset: Mapping[str, Sequence[int]],
    pred_a_by_subset: Mapping[str, Sequence[int]],
    pred_b_by_subset: Mapping[str, Sequence[int]],
    options: Resampling | None = None,
    *,
    power: float = 0.8,
) -> PairedF1Difference:
    """Paired bootstrap of headline F1(a) - F1(b) (module docs).

    Per subset: the true first-error indices (-1: all steps correct) and each PRM's predicted
    first-error indices (`predict_first_error` at its own dev-chosen τ) for the same items in
    the same order. `options` sets the number of resamples, the confidence and the seed (the
    interval method is always percentile here); the result is deterministic per seed.
    Raises ValueError on misaligned or malformed input and on a subset without erroneous or
    without all-correct items (its F1 is undefined).
    """
    opts = options or Resampling()
    if not 0 < opts.confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {opts.confidence}")
    if isinstance(opts.n_resamples, bool) or opts.n_resamples < 1:
        raise ValueError(f"n_resamples must be a positive integer, got {opts.n_resamples!r}")
    if not (math.isfinite(power) and 0 < power < 1):
        raise ValueError(f"power must be in (0, 1), got {power!r}")
    strata = _paired_strata(truth_by_subset, pred_a_by_subset, pred_b_by_subset)
    f1_a = float(np.mean([subset_metrics(a, t).f1 for t, a, _ in strata.values()]))
    f1_b = float(np.mean([subset_metrics(b, t).f1 for t, _, b in strata.values()]))
    diffs = _bootstrap_differences(strata, opts.n_resamples, opts.seed)
    alpha = 1 - opts.confidence
    lo, hi = np.quantile(diffs, [alpha / 2, 1 - alpha / 2])
    b = len(diffs)
    below, above = int((diffs <= 0).sum()), int((diffs >= 0).sum())
    p_value = min(1.0, 2 * min(1 + below, 1 + above) / (b + 1))
    se = float(np.std(diffs, ddof=1)) if b > 1 else 0.0
    z = sps.norm.ppf(1 - alpha / 2) + sps.norm.ppf(power)
    return PairedF1Difference(
        difference=f1_a - f1_b,
        ci=(float(lo), float(hi)),
        p_value=float(p_value),
        n=sum(len(t) for t, _, _ in strata.values()),
        min_detectable_difference=float(z * se) if se > 0 else None,
        se=se,
        f1_a=f1_a,
        f1_b=f1_b,
        n_by_subset={name: len(t) for name, (t, _, _) in strata.items()},
        n_resamples=b,
        confidence=float(opts.confidence),
        power=float(power),
    )


def _paired_strata(
    truth_by_subset: Mapping[str, Sequence[int]],
    pred_a_by_subset: Mapping[str, Sequence[int]],
    pred_b_by_subset: Mapping[str, Sequence[int]],
) -> dict[str, tuple[list[int], list[int], list[int]]]:
    """Checked (truth, a, b) per subset; errors name the subset and the item."""
    if not truth_by_subset:
        raise ValueError("no subsets to compare")
    names = set(truth_by_subset)
    for who, preds in (("a", pred_a_by_subset), ("b", pred_b_by_subset)):
        if set(preds) != names:
            raise ValueError(
                f"subsets differ: truth for {sorted(names)}, PRM {who} for {sorted(preds)}"
            )
    out = {}
    for name, truth in truth_by_subset.items():
        a, b = pred_a_by_subset[name], pred_b_by_subset[name]
        if not len(truth) == len(a) == len(b):
            raise ValueError(
                f"subset {name!r}: {len(truth)} truths, {len(a)} predictions of a, {len(b)} of b"
            )
        for what, xs in (("ground-truth", truth), ("PRM a", a), ("PRM b", b)):
            try:
                _index_array(xs, what)
            except ValueError as e:
                raise ValueError(f"subset {name!r}: {e}") from None
        n_err = sum(1 for t in truth if t != -1)
        if n_err == 0 or n_err == len(truth):
            kind = "erroneous" if n_err == 0 else "all-correct"
            raise ValueError(f"subset {name!r} has no {kind} items: its F1 is undefined")
        out[name] = (list(truth), list(a), list(b))
    return out


def _bootstrap_differences(
    strata: Mapping[str, tuple[list[int], list[int], list[int]]], n_resamples: int, seed: int
) -> np.ndarray:
    """Headline F1(a) - F1(b) on `n_resamples` paired resamples (module docs), vectorized: per
    batch, one index matrix per (subset, side) serves both PRMs."""
    rng = np.random.default_rng(seed)
    sides = []  # per subset: (a error hits, b error hits), (a correct hits, b correct hits)
    for truth, a, b in strata.values():
        ea, ca = _hits(a, truth)
        eb, cb = _hits(b, truth)
        sides.append(((ea, eb), (ca, cb)))
    out = np.empty(n_resamples)
    for start in range(0, n_resamples, _BATCH):
        size = min(_BATCH, n_resamples - start)
        total = np.zeros(size)
        for errors, corrects in sides:
            acc = []
            for ha, hb in (errors, corrects):
                idx = rng.integers(0, len(ha), size=(size, len(ha)))
                acc.append((ha[idx].mean(axis=1), hb[idx].mean(axis=1)))
            (ea, eb), (ca, cb) = acc
            total += _f1(ea, ca) - _f1(eb, cb)
        out[start : start + size] = total / len(sides)
    return out


def _f1(acc_error: np.ndarray, acc_correct: np.ndarray) -> np.ndarray:
    """Harmonic mean, 0 where both accuracies are 0 (as `processbench._f1`)."""
    s = acc_error + acc_correct
    return np.where(s > 0, 2 * acc_error * acc_correct / np.where(s > 0, s, 1.0), 0.0)
