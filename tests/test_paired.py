"""Paired bootstrap of the ProcessBench headline-F1 difference: against `evaluate_processbench`,
a slow resample-by-resample reference on the same draws, and a slow independent bootstrap."""

from __future__ import annotations

import time

import numpy as np
import pytest
from scipy import stats as sps

from cpmi_lib.core.intervals import Resampling
from cpmi_lib.eval.paired import _BATCH, PairedF1Difference, paired_f1_difference
from cpmi_lib.eval.processbench import evaluate_processbench, subset_metrics


def _bench(n: int, acc_a: float, acc_b: float, subsets: str = "xyz", seed: int = 0):
    """Per subset: balanced truth (-1 or a first error in 0..5) and two PRMs' predictions that
    equal the truth with probability acc_a / acc_b, sharing most of their mistakes."""
    rng = np.random.default_rng(seed)
    truth, a, b = {}, {}, {}
    for s in subsets:
        t = np.where(rng.random(n) < 0.5, -1, rng.integers(0, 6, n))
        u = rng.random(n)  # shared: the PRMs err on the same hard items, as real PRMs do
        noise = rng.integers(-1, 6, n)
        truth[s] = [int(x) for x in t]
        a[s] = [int(x) for x in np.where(u < acc_a, t, noise)]
        b[s] = [int(x) for x in np.where(u < acc_b, t, noise)]
    return truth, a, b


def _headline(truth, pred) -> float:
    return float(np.mean([subset_metrics(pred[s], truth[s]).f1 for s in truth]))


def _reference_same_draws(truth, a, b, n_resamples: int, seed: int) -> np.ndarray:
    """Slow: the implementation's draws (one batch, subsets in order, erroneous then all-correct
    items), each resample rebuilt as explicit item lists and scored by `subset_metrics`."""
    assert n_resamples <= _BATCH
    rng = np.random.default_rng(seed)
    draws = {}
    for s, t in truth.items():
        err = [i for i, x in enumerate(t) if x != -1]
        ok = [i for i, x in enumerate(t) if x == -1]
        draws[s] = (
            [[err[j] for j in row] for row in rng.integers(0, len(err), (n_resamples, len(err)))],
            [[ok[j] for j in row] for row in rng.integers(0, len(ok), (n_resamples, len(ok)))],
        )
    out = []
    for r in range(n_resamples):
        fa, fb = [], []
        for s, t in truth.items():
            items = draws[s][0][r] + draws[s][1][r]
            tt = [t[i] for i in items]
            fa.append(subset_metrics([a[s][i] for i in items], tt).f1)
            fb.append(subset_metrics([b[s][i] for i in items], tt).f1)
        out.append(np.mean(fa) - np.mean(fb))
    return np.asarray(out)


def _reference_independent(truth, a, b, n_resamples: int, seed: int) -> np.ndarray:
    """Slow and independent: its own random stream, items drawn one subset side at a time."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n_resamples):
        ra, rb, rt = {}, {}, {}
        for s, t in truth.items():
            err = [i for i, x in enumerate(t) if x != -1]
            ok = [i for i, x in enumerate(t) if x == -1]
            items = list(rng.choice(err, len(err))) + list(rng.choice(ok, len(ok)))
            rt[s] = [t[i] for i in items]
            ra[s] = [a[s][i] for i in items]
            rb[s] = [b[s][i] for i in items]
        out.append(_headline(rt, ra) - _headline(rt, rb))
    return np.asarray(out)


def test_observed_difference_is_the_difference_of_processbench_headlines():
    truth, a, b = _bench(80, 0.8, 0.7)
    res = paired_f1_difference(truth, a, b, Resampling(200))
    for pred, f1 in ((a, res.f1_a), (b, res.f1_b)):
        # a "PRM" whose step probabilities dip below 0.5 exactly at its predicted index
        probs = {
            s: [[0.9] * 7 if p == -1 else [0.9] * p + [0.1] + [0.9] * (6 - p) for p in pred[s]]
            for s in truth
        }
        ev = evaluate_processbench(probs, truth, 0.5, n_resamples=10)
        assert f1 == pytest.approx(ev.headline_f1, abs=1e-12)
    assert res.difference == pytest.approx(res.f1_a - res.f1_b, abs=1e-15)
    assert res.n == 240 and res.n_by_subset == {"x": 80, "y": 80, "z": 80}


def test_resamples_equal_the_slow_reference_on_the_same_draws():
    truth, a, b = _bench(40, 0.75, 0.6, seed=3)
    B, seed = 150, 11
    ref = _reference_same_draws(truth, a, b, B, seed)
    res = paired_f1_difference(truth, a, b, Resampling(B, confidence=0.9, seed=seed))
    lo, hi = np.quantile(ref, [0.05, 0.95])
    assert res.ci == pytest.approx((lo, hi), abs=1e-12)
    p = min(1.0, 2 * min(1 + (ref <= 0).sum(), 1 + (ref >= 0).sum()) / (B + 1))
    assert res.p_value == pytest.approx(p, abs=1e-15)
    assert res.se == pytest.approx(np.std(ref, ddof=1), abs=1e-12)
    z = sps.norm.ppf(0.95) + sps.norm.ppf(0.8)
    assert res.min_detectable_difference == pytest.approx(z * res.se, abs=1e-12)


def test_interval_agrees_with_an_independent_slow_bootstrap():
    truth, a, b = _bench(60, 0.8, 0.7, subsets="xy", seed=5)
    ref = _reference_independent(truth, a, b, 600, seed=99)
    res = paired_f1_difference(truth, a, b, Resampling(2000, seed=1))
    assert res.se == pytest.approx(np.std(ref, ddof=1), rel=0.12)
    lo, hi = np.quantile(ref, [0.025, 0.975])
    assert res.ci[0] == pytest.approx(lo, abs=0.02) and res.ci[1] == pytest.approx(hi, abs=0.02)


def test_pairing_makes_the_interval_narrower_than_unpaired():
    """Shared mistakes cancel: the paired SE is well below the unpaired sqrt(SE_a^2 + SE_b^2),
    each SE measured against a PRM that never hits (F1 0 on every resample)."""
    truth, a, b = _bench(150, 0.8, 0.74, seed=2)
    res = paired_f1_difference(truth, a, b, Resampling(1000))
    never = {s: [99] * len(a[s]) for s in a}
    se_a = paired_f1_difference(truth, a, never, Resampling(1000)).se
    se_b = paired_f1_difference(truth, b, never, Resampling(1000)).se
    assert res.se < 0.6 * np.hypot(se_a, se_b)


def test_identical_and_dominating_prms():
    truth, a, b = _bench(50, 0.8, 0.6, seed=4)
    same = paired_f1_difference(truth, a, a, Resampling(300))
    assert (same.difference, same.ci, same.p_value, same.se) == (0.0, (0.0, 0.0), 1.0, 0.0)
    assert same.min_detectable_difference is None
    perfect = paired_f1_difference(truth, truth, b, Resampling(300))
    assert perfect.difference > 0 and perfect.ci[0] > 0
    assert perfect.p_value == pytest.approx(2 / 301)  # the +1 correction: never 0
    flipped = paired_f1_difference(truth, b, truth, Resampling(300))
    assert flipped.difference == -perfect.difference and flipped.p_value == perfect.p_value


def test_fast_and_deterministic():
    truth, a, b = _bench(600, 0.8, 0.75)
    start = time.perf_counter()
    res = paired_f1_difference(truth, a, b, Resampling(2000, seed=3))
    assert time.perf_counter() - start < 1.0
    again = paired_f1_difference(truth, a, b, Resampling(2000, seed=3))
    other = paired_f1_difference(truth, a, b, Resampling(2000, seed=4))
    assert res == again and res.ci != other.ci
    assert res.n == 1800 and res.n_resamples == 2000
    d = res.to_dict()
    assert isinstance(res, PairedF1Difference) and d["ci"] == list(res.ci)
    assert all(np.isfinite(v) for v in (res.difference, *res.ci, res.p_value, res.se))


@pytest.mark.parametrize(
    ("change", "match"),
    [
        (lambda t, a, b: (t, a, {"x": b["x"]}), "subsets differ"),
        (lambda t, a, b: (t, {**a, "x": a["x"][:-1]}, b), "subset 'x'"),
        (lambda t, a, b: (t, {**a, "y": [None] * len(a["y"])}, b), "unknown"),
        (lambda t, a, b: (t, a, {**b, "y": [True] * len(b["y"])}), "int >= -1"),
        (lambda t, a, b: ({**t, "z": [-1] * len(t["z"])}, a, b), "no erroneous items"),
        (lambda t, a, b: ({**t, "z": [2] * len(t["z"])}, a, b), "no all-correct items"),
        (lambda t, a, b: ({}, {}, {}), "no subsets"),
    ],
)
def test_bad_input_raises_clearly(change, match):
    truth, a, b = _bench(20, 0.8, 0.6)
    with pytest.raises(ValueError, match=match):
        paired_f1_difference(*change(truth, a, b), Resampling(50))


def test_bad_options_raise():
    truth, a, b = _bench(20, 0.8, 0.6)
    with pytest.raises(ValueError, match="confidence"):
        paired_f1_difference(truth, a, b, Resampling(50, confidence=1.0))
    with pytest.raises(ValueError, match="n_resamples"):
        paired_f1_difference(truth, a, b, Resampling(0))
    with pytest.raises(ValueError, match="power"):
        paired_f1_difference(truth, a, b, Resampling(50), power=1.0)
