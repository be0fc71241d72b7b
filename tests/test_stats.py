"""The statistics module against hand-computed values."""

import math
import warnings

import numpy as np
import pytest
from scipy.stats import binom

from cpmi_lib.core.intervals import Resampling, interval
from cpmi_lib.core.roc import auroc, auroc_ci, roc_curve_points
from cpmi_lib.core.stats import mcnemar_test, rank_correlations

#: Bounds the suite computed before `interval` took over (the test at the bottom of each list).
PINNED = [
    (-0.5630408294010584, -0.07874657569967121),
    (0.525, 0.775),
    (0.4642857142857143, 0.7339167357083678),
    (0.41481481481481486, 0.7305522914218565),
]
PINNED_AUROC = (0.6914871756783522, 0.7994578134284016)


def _paired(both: int, a_only: int, b_only: int, neither: int) -> tuple[list[bool], list[bool]]:
    a = [True] * both + [True] * a_only + [False] * b_only + [False] * neither
    b = [True] * both + [False] * a_only + [True] * b_only + [False] * neither
    return a, b


def test_mcnemar_exact_matches_hand_computed_binomial():
    a, b = _paired(both=5, a_only=8, b_only=2, neither=3)
    res = mcnemar_test(a, b)
    assert res.table == [[5, 8], [2, 3]]
    assert res.p_value == pytest.approx(0.109375)
    assert res.p_value == pytest.approx(2 * binom.cdf(2, 10, 0.5))
    assert res.statistic == 2
    assert res.n == 18
    assert res.a_accuracy == pytest.approx(13 / 18)
    assert res.b_accuracy == pytest.approx(7 / 18)
    assert res.to_dict()["table"] == [[5, 8], [2, 3]]


def test_mcnemar_ignores_concordant_items_and_is_symmetric():
    a, b = _paired(both=100, a_only=8, b_only=2, neither=50)
    assert mcnemar_test(a, b).p_value == pytest.approx(0.109375)
    assert mcnemar_test(b, a).p_value == pytest.approx(0.109375)
    assert mcnemar_test(b, a).table == [[100, 2], [8, 50]]


def test_mcnemar_identical_systems_give_p_one():
    a = [True, False, True, True, False]
    assert mcnemar_test(a, list(a)).p_value == 1.0


def test_mcnemar_clear_difference_is_significant():
    a, b = _paired(both=0, a_only=20, b_only=0, neither=0)
    assert mcnemar_test(a, b).p_value == pytest.approx(2 * 0.5**20)


def test_mcnemar_rejects_misaligned_or_empty_input():
    with pytest.raises(ValueError, match="a has 2, b has 3"):
        mcnemar_test([True, False], [True, False, True])
    with pytest.raises(ValueError, match="at least one"):
        mcnemar_test([], [])
    with pytest.raises(ValueError, match="booleans"):
        mcnemar_test([0, 2], [1, 1])


def test_interval_contains_estimate_narrows_with_n_and_is_seeded():
    rng = np.random.default_rng(1)
    small = rng.random(30) < 0.6
    large = rng.random(1000) < 0.6
    opts = Resampling(n_resamples=1000)
    lo_s, hi_s = interval(np.mean, small, opts)
    lo_l, hi_l = interval(np.mean, large, opts)
    assert lo_s <= small.mean() <= hi_s
    assert lo_l <= large.mean() <= hi_l
    assert hi_l - lo_l < (hi_s - lo_s) / 3  # width ~ 1/sqrt(n): sqrt(1000/30) = 5.8
    assert interval(np.mean, small, opts) == (lo_s, hi_s)
    assert interval(np.mean, small, Resampling(n_resamples=1000, seed=1)) != (lo_s, hi_s)


def test_interval_width_matches_normal_approximation():
    x = np.random.default_rng(0).normal(size=400)
    lo, hi = interval(np.mean, x)  # the default options: 2000 resamples, 95%, seed 0
    se = x.std(ddof=1) / math.sqrt(len(x))
    assert hi - lo == pytest.approx(2 * 1.96 * se, rel=0.15)


@pytest.mark.parametrize("method", ["percentile", "BCa"])
def test_interval_degenerate_data_gives_the_point(method):
    opts = Resampling(method=method)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert interval(np.mean, [True] * 7, opts) == (1.0, 1.0)
        assert interval(np.median, [3.5, 3.5, 3.5], opts) == (3.5, 3.5)
        assert interval(np.mean, [2.0]) == (2.0, 2.0)


def test_interval_rejects_empty_bad_options_and_unknown_designs():
    with pytest.raises(ValueError, match="empty"):
        interval(np.mean, [])
    with pytest.raises(ValueError, match="confidence"):
        interval(np.mean, [1.0, 2.0], Resampling(confidence=95))
    with pytest.raises(ValueError, match="n_resamples"):
        interval(np.mean, [1.0, 2.0], Resampling(n_resamples=0))
    with pytest.raises(ValueError, match="one-dimensional"):
        interval(np.mean, [[1.0, 2.0]])
    with pytest.raises(ValueError, match="design"):
        interval(np.mean, [1.0, 2.0], design="clusters")


def _f1(pred: np.ndarray, truth: np.ndarray) -> float:
    """F1 of boolean predictions; NaN when there are no positives at all."""
    with np.errstate(invalid="ignore"):
        return 2 * np.sum(pred & truth) / (np.sum(pred) + np.sum(truth))


def test_rows_interval_keeps_rows_together():
    rng = np.random.default_rng(0)
    truth = rng.random(200) < 0.5
    pred = truth.copy()
    opts = Resampling(n_resamples=300)
    # Perfectly aligned pairs: every joint resample has F1 = 1; an unpaired one would not.
    assert interval(_f1, (pred, truth), opts, design="rows") == (1.0, 1.0)
    pred[:40] = ~pred[:40]
    lo, hi = interval(_f1, (pred, truth), opts, design="rows")
    assert lo < _f1(pred, truth) < hi < 1.0
    assert interval(_f1, (pred, truth), opts, design="rows") == (lo, hi)


def test_rows_interval_rejects_misaligned_arrays_and_flags_undefined_resamples():
    with pytest.raises(ValueError, match="equal lengths"):
        interval(_f1, (np.zeros(3), np.zeros(4)), design="rows")
    pred = np.array([True] + [False] * 9)
    truth = np.array([True] + [False] * 9)
    with pytest.warns(RuntimeWarning, match="undefined"):
        lo, hi = interval(_f1, (pred, truth), Resampling(n_resamples=200), design="rows")
    assert math.isnan(lo) and math.isnan(hi)


def test_strata_interval_keeps_group_sizes_and_holds_singletons():
    def diff(a, b, axis=-1):
        return a.mean(axis=axis) - b.mean(axis=axis)

    a = np.arange(10.0)
    opts = Resampling(n_resamples=500)
    lo, hi = interval(diff, (a, [100.0]), opts, design="strata")
    # b is a single observation: only a varies, so the CI is a's CI shifted by -100.
    lo_a, hi_a = interval(np.mean, a, opts)
    assert (lo, hi) == pytest.approx((lo_a - 100, hi_a - 100))
    assert interval(diff, ([1.0], [3.0]), design="strata") == (-2.0, -2.0)
    with pytest.raises(ValueError, match="sample 1"):
        interval(diff, (a, []), design="strata")


def test_interval_gives_the_numbers_of_the_former_per_design_functions():
    """Pinned from the suite before `interval` replaced bootstrap_ci, accuracy_ci,
    bootstrap_ci_paired and bootstrap_ci_stratified: same seeds, same draws, same bounds."""
    rng = np.random.default_rng(5)
    x = rng.normal(size=50)
    correct = rng.random(40) < 0.7
    pred, truth = rng.random(60) < 0.5, rng.random(60) < 0.5
    e, c = (rng.random(25) < 0.4).astype(float), (rng.random(30) < 0.8).astype(float)

    def f1(err, cor, axis=-1):
        e, c = err.mean(axis=axis), cor.mean(axis=axis)
        return 2 * e * c / (e + c)

    got = [
        interval(np.mean, x),
        interval(np.mean, correct, Resampling(n_resamples=700, confidence=0.9, seed=3)),
        interval(_f1, (pred, truth), Resampling(n_resamples=300, seed=2), design="rows"),
        interval(f1, (e, c), Resampling(n_resamples=400, seed=1), design="strata"),
    ]
    assert got == PINNED


def test_rank_correlations_on_monotone_and_reversed_data():
    x = [1.0, 2.0, 3.0, 4.0, 5.0]
    up = rank_correlations(x, [v**3 for v in x])  # monotone, not linear
    assert up["spearman_rho"] == pytest.approx(1.0)
    assert up["kendall_tau"] == pytest.approx(1.0)
    assert up["n"] == 5
    assert up["kendall_p"] == pytest.approx(2 / math.factorial(5))  # exact: 2 of 5! orders
    down = rank_correlations(x, [-v for v in x])
    assert down["spearman_rho"] == pytest.approx(-1.0)
    assert down["kendall_tau"] == pytest.approx(-1.0)


def test_rank_correlations_hand_case_and_errors():
    # Ranks of y: [1, 3, 2, 4] -> d^2 sum = 2 -> rho = 1 - 6*2/(4*15) = 0.8; tau = (5-1)/6.
    res = rank_correlations([1, 2, 3, 4], [10, 30, 20, 40])
    assert res["spearman_rho"] == pytest.approx(0.8)
    assert res["kendall_tau"] == pytest.approx(4 / 6)
    with pytest.raises(ValueError, match="aligned"):
        rank_correlations([1, 2], [1, 2, 3])
    with pytest.raises(ValueError, match="at least 2"):
        rank_correlations([1], [1])


def test_auroc_hand_case():
    scores, truth = [0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1]
    # Pairs (pos, neg): (0.35, 0.1) ok, (0.35, 0.4) wrong, (0.8, *) ok -> 3/4.
    assert auroc(scores, truth) == pytest.approx(0.75)
    assert auroc(scores, [False, False, True, True]) == pytest.approx(0.75)
    assert auroc([0.5, 0.5], [0, 1]) == pytest.approx(0.5)  # ties count half


def test_auroc_one_class_is_a_clear_error():
    with pytest.raises(ValueError, match="both classes.*all 3 items are positive"):
        auroc([0.1, 0.2, 0.3], [1, 1, 1])
    with pytest.raises(ValueError, match="negative"):
        auroc_ci([0.1, 0.2, 0.3], [0, 0, 0])
    with pytest.raises(ValueError, match="aligned"):
        auroc([0.1, 0.2], [0, 1, 1])


def test_auroc_ci_contains_estimate_and_is_seeded():
    rng = np.random.default_rng(0)
    truth = rng.random(300) < 0.4
    scores = rng.normal(size=300) + truth
    est = auroc(scores, truth)
    lo, hi = auroc_ci(scores, truth, Resampling(n_resamples=500))
    assert 0.5 < lo < est < hi < 1.0
    assert auroc_ci(scores, truth, Resampling(n_resamples=500)) == (lo, hi)
    assert (lo, hi) == PINNED_AUROC
    # Perfect separation: every stratified resample is perfectly separated too.
    assert auroc_ci([0.1, 0.2, 0.8, 0.9], [0, 0, 1, 1]) == (1.0, 1.0)


def test_roc_curve_points_hand_case():
    fpr, tpr = roc_curve_points([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1])
    assert fpr[0] == 0 and tpr[-1] == 1 and fpr[-1] == 1
    assert np.trapezoid(tpr, fpr) == pytest.approx(0.75)
