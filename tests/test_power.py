"""Power of the exact McNemar test: against statsmodels' decisions, a slow exact enumeration and a
seeded Monte Carlo simulation; the size functions against brute-force searches."""

from __future__ import annotations

import math
from functools import cache

import numpy as np
import pytest
from scipy import stats as sps
from statsmodels.stats.contingency_tables import mcnemar

from cpmi_lib.core.power import (
    McNemarPlanning,
    mcnemar_critical_counts,
    mcnemar_mdd_for_outcomes,
    mcnemar_mdd_for_table,
    mcnemar_min_detectable_difference,
    mcnemar_power,
    mcnemar_problems_needed,
)
from cpmi_lib.core.stats import mcnemar_test


@cache
def _rejects(a_only: int, b_only: int, alpha: float) -> bool:
    """statsmodels' exact McNemar decision for a table with these discordant counts."""
    return bool(mcnemar([[0, a_only], [b_only, 0]], exact=True).pvalue <= alpha)


def _reference_power(n: int, p: float, delta: float, alpha: float) -> float:
    """Slow exact enumeration: every (discordant count d, a's share k) with statsmodels' test."""
    q = (p + delta) / (2 * p)
    total = 0.0
    for d in range(n + 1):
        pd = sps.binom.pmf(d, n, p)
        for k in range(d + 1):
            if _rejects(k, d - k, alpha):
                total += pd * sps.binom.pmf(k, d, q)
    return total


@pytest.mark.parametrize("alpha", [0.05, 0.01, 0.2])
def test_rejection_region_matches_statsmodels(alpha):
    c = mcnemar_critical_counts(np.arange(80), alpha)
    for d in range(80):
        for k in range(d + 1):
            assert (min(k, d - k) <= c[d]) == _rejects(k, d - k, alpha), (d, k)


def test_rejection_region_matches_the_suites_mcnemar_test():
    # 9 discordant items all one way: p = 2 / 2^9 < 0.05; 5 all one way: p = 1/16 > 0.05
    for a_only, b_only in [(9, 0), (5, 0), (7, 1), (8, 2), (0, 0)]:
        a = [True] * a_only + [False] * b_only + [True] * 4
        b = [False] * a_only + [True] * b_only + [True] * 4
        decision = mcnemar_test(a, b).p_value <= 0.05
        d = a_only + b_only
        assert decision == (min(a_only, b_only) <= mcnemar_critical_counts(d)[0])


@pytest.mark.parametrize(
    ("n", "p", "delta", "alpha"),
    [(30, 0.3, 0.1, 0.05), (40, 0.5, -0.2, 0.05), (25, 0.2, 0.0, 0.1), (35, 0.15, 0.15, 0.01)],
)
def test_power_equals_slow_exact_enumeration(n, p, delta, alpha):
    assert mcnemar_power(n, p, delta, alpha) == pytest.approx(
        _reference_power(n, p, delta, alpha), abs=1e-12
    )


@pytest.mark.parametrize(("n", "p", "delta"), [(120, 0.2, 0.08), (60, 0.4, 0.0), (200, 0.05, 0.03)])
def test_power_agrees_with_a_seeded_simulation(n, p, delta):
    """Simulate paired tables (multinomial over a-only, b-only, concordant), decide each with
    statsmodels; the exact power lies within 4 Monte Carlo standard errors."""
    rng = np.random.default_rng(7)
    reps = 4000
    cells = rng.multinomial(n, [(p + delta) / 2, (p - delta) / 2, 1 - p], size=reps)
    hits = np.mean([_rejects(int(a), int(b), 0.05) for a, b, _ in cells])
    exact = mcnemar_power(n, p, delta)
    se = math.sqrt(max(exact * (1 - exact), 1e-4) / reps)
    assert abs(hits - exact) < 4 * se, (hits, exact)


def test_power_shape():
    assert mcnemar_power(100, 0.0, 0.0) == 0.0  # nothing can differ
    assert mcnemar_power(300, 0.2, 0.0) <= 0.05  # the exact test's size is at most alpha
    assert mcnemar_power(300, 0.2, 0.07) == pytest.approx(mcnemar_power(300, 0.2, -0.07))
    grid = [mcnemar_power(150, 0.2, x) for x in np.linspace(0, 0.2, 21)]
    assert all(b >= a for a, b in zip(grid, grid[1:], strict=False)), grid
    assert mcnemar_power(150, 0.2, 0.2) > 0.99
    assert mcnemar_power(400, 0.1, 0.05) > mcnemar_power(200, 0.1, 0.05)


def test_min_detectable_difference_is_where_power_reaches_the_target():
    for n, p in [(200, 0.015), (600, 0.1), (100, 0.3)]:
        mdd = mcnemar_min_detectable_difference(n, p)
        at = mcnemar_power(n, max(p, mdd), mdd)
        below = mcnemar_power(n, max(p, mdd - 1e-5), mdd - 1e-5)
        assert at >= 0.8 > below, (n, p, mdd, at, below)
    # more items, smaller MDD; higher power asked, larger MDD
    assert mcnemar_min_detectable_difference(800, 0.1) < mcnemar_min_detectable_difference(200, 0.1)
    assert mcnemar_min_detectable_difference(300, 0.1, power=0.9) > (
        mcnemar_min_detectable_difference(300, 0.1, power=0.8)
    )


def test_min_detectable_difference_normal_approximation_ballpark():
    """Connor's normal approximation, n = (z_a sqrt(p) + z_b sqrt(p - d^2))^2 / d^2, lands
    near the exact answer at a moderate size (the exact test is a little more conservative)."""
    n, p = 600, 0.1
    mdd = mcnemar_min_detectable_difference(n, p)
    za, zb = sps.norm.ppf(0.975), sps.norm.ppf(0.8)
    approx_n = (za * math.sqrt(p) + zb * math.sqrt(p - mdd**2)) ** 2 / mdd**2
    assert 0.8 * n < approx_n < 1.05 * n


def test_min_detectable_difference_at_tiny_n_raises():
    with pytest.raises(ValueError, match="no difference is detectable"):
        mcnemar_min_detectable_difference(5, 0.5)
    assert mcnemar_min_detectable_difference(12, 0.5) <= 1.0


def test_problems_needed_equals_a_linear_scan():
    for delta, p in [(0.2, 0.3), (-0.15, 0.25), (0.1, 0.05)]:
        target = 0.8

        def pw(n, delta=delta, p=p):
            return mcnemar_power(n, max(p, abs(delta)), delta)

        scan = next(n for n in range(1, 2000) if pw(n) >= target)
        assert mcnemar_problems_needed(delta, p) == scan


def test_problems_needed_for_the_issue_target():
    """A 5-point difference at 10% discordance: a few hundred problems, consistent with MDD."""
    n = mcnemar_problems_needed(0.05, 0.1)
    assert 250 < n < 450
    assert mcnemar_min_detectable_difference(n, 0.1) <= 0.05 + 1e-6
    assert mcnemar_min_detectable_difference(n - 1, 0.1) > 0.05 - 2e-3


def test_mdd_for_an_observed_table():
    table = [[158, 3], [0, 39]]  # the issue's best-labeler CPMI vs MC table
    res = mcnemar_mdd_for_table(table)
    assert isinstance(res, McNemarPlanning)
    assert (res.n, res.n_discordant, res.p_discordant) == (200, 3, 0.015)
    assert res.min_detectable_difference == mcnemar_min_detectable_difference(200, 0.015)
    assert res.to_dict()["min_detectable_difference"] == res.min_detectable_difference
    a = [True] * 158 + [True] * 3 + [False] * 39
    b = [True] * 158 + [False] * 3 + [False] * 39
    assert mcnemar_mdd_for_outcomes(a, b) == res
    assert mcnemar_test(a, b).table == table


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: mcnemar_power(0, 0.1, 0.0), "positive integer"),
        (lambda: mcnemar_power(True, 0.1, 0.0), "positive integer"),
        (lambda: mcnemar_power(10, 1.5, 0.0), "p_discordant"),
        (lambda: mcnemar_power(10, float("nan"), 0.0), "p_discordant"),
        (lambda: mcnemar_power(10, 0.1, 0.2), "cannot exceed"),
        (lambda: mcnemar_power(10, 0.1, float("nan")), "delta"),
        (lambda: mcnemar_power(10, 0.1, 0.0, alpha=0.0), "alpha"),
        (lambda: mcnemar_min_detectable_difference(10, 0.1, power=1.0), "power"),
        (lambda: mcnemar_problems_needed(0.0, 0.1), "non-zero"),
        (lambda: mcnemar_problems_needed(1.5, 0.1), "non-zero"),
        (lambda: mcnemar_mdd_for_table([[1, 2, 3]]), "2x2"),
        (lambda: mcnemar_mdd_for_table([[1, -2], [3, 4]]), ">= 0"),
        (lambda: mcnemar_mdd_for_table([[1, 2.5], [3, 4]]), "integer"),
        (lambda: mcnemar_mdd_for_table([[0, 0], [0, 0]]), "no items"),
        (lambda: mcnemar_mdd_for_outcomes([True, False], [True]), "aligned"),
        (lambda: mcnemar_mdd_for_outcomes([True, 2], [True, False]), "booleans"),
        (lambda: mcnemar_critical_counts(-1), ">= 0"),
    ],
)
def test_bad_input_raises_clearly(call, match):
    with pytest.raises(ValueError, match=match):
        call()
