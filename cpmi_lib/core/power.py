"""Power of the exact McNemar test, and the sizes it implies: the minimum detectable difference
at a given number of paired items, and the number of items needed for a given difference.

Model (for two systems scored on the same n items, e.g. two PRMs' Best-of-N picks on the same
problems): each item is discordant (one system right, the other wrong) with probability
``p_discordant``, independently; a discordant item favours system a with probability
``(p_discordant + delta) / (2 p_discordant)``, so that ``delta = P(a right, b wrong) - P(a
wrong, b right)`` is the difference of the two accuracies. The test is the exact two-sided
McNemar test of `cpmi_lib.core.stats.mcnemar_test` (statsmodels' ``mcnemar(table,
exact=True)``): with d discordant items of which k favour a, the p-value is
``min(1, 2 * BinomCDF(min(k, d - k); d, 1/2))`` and the test rejects when it is <= alpha.

`mcnemar_power` is EXACT under this model: it sums, over the number of discordant items
``D ~ Binomial(n, p_discordant)``, the probability that the split ``K | D ~ Binomial(D, q)``
falls in the rejection region. Nothing is simulated.

A difference delta needs at least |delta| discordant items, so the size functions
(`mcnemar_min_detectable_difference`, `mcnemar_problems_needed`) evaluate power at
``max(p_discordant, |delta|)``: `p_discordant` is the discordance expected when the systems are
close (e.g. the one observed), and a larger difference is allowed to bring its own.

`mcnemar_mdd_for_table` / `mcnemar_mdd_for_outcomes` give the minimum detectable difference at
an observed table's size and discordance. That is a PLANNING figure (which true difference this
design would have detected with the given power), not a post-hoc power claim about the observed
difference: post-hoc "observed power" is a function of the p-value and adds nothing to it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from scipy import stats as sps

from cpmi_lib.core.stats import as_bool_array

#: Bisection tolerance on delta (accuracy difference): far below any reported digit.
DELTA_TOLERANCE = 1e-7
#: The largest number of items `mcnemar_problems_needed` searches.
MAX_ITEMS = 10_000_000


def _check_probability(value: float, name: str, *, closed: bool) -> float:
    x = float(value)
    ok = (0 <= x <= 1) if closed else (0 < x < 1)
    if not (math.isfinite(x) and ok):
        interval = "[0, 1]" if closed else "(0, 1)"
        raise ValueError(f"{name} must be in {interval}, got {value!r}")
    return x


def _check_n(n: int) -> int:
    if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 1:
        raise ValueError(f"n must be a positive integer number of paired items, got {n!r}")
    return int(n)


def mcnemar_critical_counts(d: np.ndarray | int, alpha: float = 0.05) -> np.ndarray:
    """Per number of discordant items d: the largest c with ``2 * BinomCDF(c; d, 1/2) <= alpha``
    (-1 when none), so the exact McNemar test rejects iff ``min(k, d - k) <= c``."""
    alpha = _check_probability(alpha, "alpha", closed=False)
    ds = np.atleast_1d(np.asarray(d, dtype=int))
    if (ds < 0).any():
        raise ValueError("numbers of discordant items must be >= 0")
    # ppf: the smallest k with CDF(k) >= alpha / 2; step down by one where the CDF overshoots,
    # and check both neighbours with the very expression statsmodels uses (2 * cdf <= alpha).
    c = sps.binom.ppf(alpha / 2, ds, 0.5).astype(int)
    for _ in range(2):
        c = np.where((c >= 0) & (2 * sps.binom.cdf(c, ds, 0.5) > alpha), c - 1, c)
        c = np.where(2 * sps.binom.cdf(c + 1, ds, 0.5) <= alpha, c + 1, c)
    return np.minimum(c, (ds - 1) // 2)  # never reaches the middle: 2 * CDF there is >= 1


def mcnemar_power(n: int, p_discordant: float, delta: float, alpha: float = 0.05) -> float:
    """Exact probability that the two-sided exact McNemar test at level `alpha` rejects, for n
    paired items, discordance `p_discordant` and accuracy difference `delta` (module docs).

    Requires ``|delta| <= p_discordant`` (a difference cannot exceed the discordant share).
    At ``delta = 0`` this is the test's actual size, at most alpha. With ``p_discordant = 0``
    nothing can differ and the power is 0.
    """
    n = _check_n(n)
    p = _check_probability(p_discordant, "p_discordant", closed=True)
    alpha = _check_probability(alpha, "alpha", closed=False)
    delta = float(delta)
    if not math.isfinite(delta) or abs(delta) > p + 1e-12:
        raise ValueError(
            f"delta must satisfy |delta| <= p_discordant = {p}, got {delta!r}: a difference of "
            "accuracies cannot exceed the share of discordant items"
        )
    if p == 0:
        return 0.0
    q = min(1.0, max(0.0, (p + delta) / (2 * p)))
    d = np.arange(n + 1)
    c = mcnemar_critical_counts(d, alpha)
    # Rejection: K <= c or K >= d - c (disjoint, since c < d / 2); c = -1 gives zero mass.
    reject = sps.binom.cdf(c, d, q) + sps.binom.sf(d - c - 1, d, q)
    reject = np.where(c >= 0, reject, 0.0)
    power = float(np.dot(sps.binom.pmf(d, n, p), reject))
    return min(1.0, max(0.0, power))


def _power_at(n: int, p_discordant: float, delta: float, alpha: float) -> float:
    """Power with the discordance a difference delta needs at least (module docs)."""
    return mcnemar_power(n, max(p_discordant, abs(delta)), delta, alpha)


def mcnemar_min_detectable_difference(
    n: int, p_discordant: float, alpha: float = 0.05, power: float = 0.8
) -> float:
    """The smallest accuracy difference delta > 0 that the exact McNemar test on n paired items
    detects (two-sided, level `alpha`) with probability >= `power`, by bisection on delta.

    Power is evaluated at discordance ``max(p_discordant, delta)``. Raises ValueError when even
    delta = 1 (every item right for a and wrong for b) is not detectable at this n (n < 6 at
    alpha 0.05: the smallest possible p-value is 2 / 2^n).
    """
    n = _check_n(n)
    p = _check_probability(p_discordant, "p_discordant", closed=True)
    alpha = _check_probability(alpha, "alpha", closed=False)
    target = _check_probability(power, "power", closed=False)
    if _power_at(n, p, 1.0, alpha) < target:
        raise ValueError(
            f"no difference is detectable with power {target} at n = {n} items and alpha "
            f"{alpha}: even all {n} items discordant in one direction give too little evidence"
        )
    lo, hi = 0.0, 1.0  # power(lo) < target <= power(hi); power rises with delta
    while hi - lo > DELTA_TOLERANCE:
        mid = (lo + hi) / 2
        if _power_at(n, p, mid, alpha) >= target:
            hi = mid
        else:
            lo = mid
    return hi


def mcnemar_problems_needed(
    delta: float, p_discordant: float, alpha: float = 0.05, power: float = 0.8
) -> int:
    """The smallest number of paired items n at which the exact McNemar test detects an
    accuracy difference `delta` with probability >= `power` (discordance
    ``max(p_discordant, |delta|)``).

    Found by doubling then bisection on n. The exact test's power is not strictly monotone in n
    (the discrete rejection region makes a small sawtooth), but the random number of discordant
    items smooths it to well below a tenth of a point of power, so this is the smallest n up to
    that wobble; `mcnemar_power` at the returned n is >= `power` by construction.
    """
    delta = float(delta)
    if not math.isfinite(delta) or not 0 < abs(delta) <= 1:
        raise ValueError(
            f"delta must be a non-zero difference of accuracies in [-1, 1], got {delta!r}"
        )
    p = _check_probability(p_discordant, "p_discordant", closed=True)
    alpha = _check_probability(alpha, "alpha", closed=False)
    target = _check_probability(power, "power", closed=False)
    hi = 1
    while _power_at(hi, p, delta, alpha) < target:
        hi *= 2
        if hi > MAX_ITEMS:
            raise ValueError(f"more than {MAX_ITEMS} items needed for delta {delta}")
    lo = hi // 2  # power(lo) < target (or lo = 0)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if _power_at(mid, p, delta, alpha) >= target:
            hi = mid
        else:
            lo = mid
    return hi


# -------------------------------------------------------------------- at an observed table


@dataclass(frozen=True)
class McNemarPlanning:
    """The minimum detectable difference at an observed table's size and discordance.

    A planning figure (see the module docs): `min_detectable_difference` is the accuracy
    difference this design would detect with probability `power` at level `alpha`, assuming the
    discordance `p_discordant` observed (or the least a larger difference needs).
    """

    n: int
    n_discordant: int
    p_discordant: float
    alpha: float
    power: float
    min_detectable_difference: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def mcnemar_mdd_for_table(
    table: Sequence[Sequence[int]], alpha: float = 0.05, power: float = 0.8
) -> McNemarPlanning:
    """`McNemarPlanning` of a 2x2 table ``[[both right, a only], [b only, both wrong]]`` (the
    layout of `McNemarResult.table`)."""
    t = np.asarray(table)
    if t.shape != (2, 2):
        raise ValueError(f"a McNemar table is 2x2, got shape {t.shape}")
    if not np.issubdtype(t.dtype, np.integer) and not (
        np.issubdtype(t.dtype, np.floating) and np.isfinite(t).all() and (t == np.round(t)).all()
    ):
        raise ValueError(f"a McNemar table holds integer counts, got {table!r}")
    t = t.astype(int)
    if (t < 0).any():
        raise ValueError(f"a McNemar table holds counts >= 0, got {table!r}")
    n = int(t.sum())
    if n == 0:
        raise ValueError("a McNemar table with no items has no minimum detectable difference")
    n_disc = int(t[0, 1] + t[1, 0])
    p = n_disc / n
    mdd = mcnemar_min_detectable_difference(n, p, alpha, power)
    return McNemarPlanning(n, n_disc, p, float(alpha), float(power), mdd)


def mcnemar_mdd_for_outcomes(
    a_correct: Sequence[bool], b_correct: Sequence[bool], alpha: float = 0.05, power: float = 0.8
) -> McNemarPlanning:
    """`McNemarPlanning` of two systems' per-item outcomes on the same items (as given to
    `mcnemar_test`)."""
    a = as_bool_array(a_correct, "a_correct")
    b = as_bool_array(b_correct, "b_correct")
    if len(a) != len(b):
        raise ValueError(f"paired outcomes need aligned items: a has {len(a)}, b has {len(b)}")
    table = [
        [int(np.sum(a & b)), int(np.sum(a & ~b))],
        [int(np.sum(~a & b)), int(np.sum(~a & ~b))],
    ]
    return mcnemar_mdd_for_table(table, alpha, power)
