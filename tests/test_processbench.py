"""ProcessBench metric on hand-made cases: exact hits, NaN on empty sides, unweighted headline,
and a threshold chosen on dev data only."""

import json
import math

import numpy as np
import pytest

from cpmi_lib.core.trajectory import Trajectory
from cpmi_lib.eval import evaluate_prm
from cpmi_lib.eval.processbench import (
    ORACLE_LABEL,
    choose_threshold,
    evaluate_processbench,
    first_errors,
    oracle_threshold_result,
    predict_first_error,
    subset_metrics,
)


def _probs(first_error: int, n_steps: int, low: float = 0.1, high: float = 0.95) -> list[float]:
    """Step probabilities whose first step below any τ in (low, high] is `first_error`."""
    if first_error == -1:
        return [high] * n_steps
    return [high] * first_error + [low] + [high] * (n_steps - first_error - 1)


def test_predict_first_error_hand_cases():
    assert predict_first_error([0.9, 0.4, 0.2], 0.5) == 1
    assert predict_first_error([0.9, 0.8], 0.5) == -1
    assert predict_first_error([0.1, 0.9], 0.5) == 0
    assert predict_first_error([0.9, 0.6, 0.3], 0.7) == 1
    assert predict_first_error([0.5, 0.5], 0.5) == -1  # strictly below τ
    with pytest.raises(ValueError, match="non-empty"):
        predict_first_error([], 0.5)
    with pytest.raises(ValueError, match=r"step_probs\[1\] is NaN"):
        predict_first_error([0.9, float("nan")], 0.5)


def test_subset_metrics_hand_case():
    truth = [1, 2, 0, 3, -1, -1, -1, -1]
    pred = [1, 0, 0, -1, -1, -1, -1, 2]  # 2 of 4 exact hits; 3 of 4 correct items kept at -1
    m = subset_metrics(pred, truth)
    assert m.acc_error == pytest.approx(0.5)
    assert m.acc_correct == pytest.approx(0.75)
    assert m.f1 == pytest.approx(0.6)
    assert (m.n_error, m.n_correct) == (4, 4)


def test_subset_metrics_needs_the_exact_index():
    # Flagging an erroneous solution too early or too late is a miss, not a partial hit.
    m = subset_metrics([0, 3, -1], [1, 2, 2])
    assert m.acc_error == 0.0
    assert math.isnan(m.acc_correct)


def test_subset_metrics_zero_accuracies_give_f1_zero():
    m = subset_metrics([-1, 0], [1, -1])
    assert (m.acc_error, m.acc_correct, m.f1) == (0.0, 0.0, 0.0)


def test_subset_metrics_empty_sides_are_nan():
    all_correct = subset_metrics([-1, 2], [-1, -1])
    assert math.isnan(all_correct.acc_error)
    assert all_correct.acc_correct == 0.5
    assert math.isnan(all_correct.f1)
    all_wrong = subset_metrics([1, 2], [1, 0])
    assert all_wrong.acc_error == 0.5 and math.isnan(all_wrong.acc_correct)
    assert math.isnan(all_wrong.f1)
    empty = subset_metrics([], [])
    assert math.isnan(empty.acc_error) and math.isnan(empty.acc_correct)
    assert math.isnan(empty.f1) and (empty.n_error, empty.n_correct) == (0, 0)


def test_subset_metrics_rejects_unknown_truth_naming_the_item():
    with pytest.raises(ValueError, match="item 2: ground-truth first error is unknown"):
        subset_metrics([0, 1, 2], [0, 1, None])
    with pytest.raises(ValueError, match="3 predictions for 2"):
        subset_metrics([0, 1, 2], [0, 1])
    with pytest.raises(ValueError, match="item 0: predicted"):
        subset_metrics([-2], [0])


def test_first_errors_from_trajectories():
    ts = [
        Trajectory(id="a", question="q", steps=["s1", "s2"], first_error=1),
        Trajectory(id="b", question="q", steps=["s1"], first_error=-1),
    ]
    assert first_errors(ts) == [1, -1]
    ts.append(Trajectory(id="c", question="q", steps=["s1"]))
    with pytest.raises(ValueError, match="trajectory 2 \\('c'\\).*unknown"):
        first_errors(ts)


def _hand_subset(n_pairs: int) -> tuple[list[list[float]], list[int]]:
    """`n_pairs` times two erroneous items at τ=0.5: one exact hit, one flagged too early."""
    probs, truth = [], []
    for _ in range(n_pairs):
        probs += [_probs(1, 3), _probs(0, 3)]  # truth 1 and 2: one hit, one early flag
        truth += [1, 2]
    return probs, truth


def test_evaluate_hand_case_and_headline_is_unweighted():
    # Subset "big": 50 erroneous (25 hits) and 52 correct (39 kept at -1): F1 = 0.6.
    big_probs, big_truth = _hand_subset(25)
    big_probs += [_probs(-1, 3)] * 39 + [_probs(1, 3)] * 13
    big_truth += [-1] * 52
    # Subset "small": 1 erroneous hit and 1 correct kept: F1 = 1.
    small_probs, small_truth = [_probs(0, 2), _probs(-1, 2)], [0, -1]
    res = evaluate_processbench(
        {"big": big_probs, "small": small_probs},
        {"big": big_truth, "small": small_truth},
        threshold=0.5,
        n_resamples=500,
    )
    big = res.subsets["big"]
    assert (big.acc_error, big.acc_correct) == pytest.approx((0.5, 0.75))
    assert big.f1 == pytest.approx(0.6)
    assert (big.n_error, big.n_correct) == (50, 52)
    assert res.subsets["small"].f1 == 1.0
    assert res.headline_f1 == pytest.approx(0.8)  # weighted by size it would be ~0.608
    lo, hi = big.f1_ci
    assert lo < 0.6 < hi
    assert res.subsets["small"].f1_ci == (1.0, 1.0)  # one item per side: nothing to resample
    # The headline only varies through "big", whose F1 enters at half weight.
    assert res.headline_ci == pytest.approx((0.5 + lo / 2, 0.5 + hi / 2))
    assert res.threshold == 0.5 and res.label == "given threshold"
    d = json.loads(json.dumps(res.to_dict()))
    assert d["headline_f1"] == pytest.approx(0.8)
    assert d["subsets"]["big"]["n_error"] == 50
    again = evaluate_processbench(
        {"big": big_probs, "small": small_probs},
        {"big": big_truth, "small": small_truth},
        threshold=0.5,
        n_resamples=500,
    )
    assert again.headline_ci == res.headline_ci


def test_evaluate_all_correct_or_empty_subset_makes_headline_nan():
    probs = {"ok": [_probs(0, 2), _probs(-1, 2)], "all_correct": [_probs(-1, 2)], "empty": []}
    truth = {"ok": [0, -1], "all_correct": [-1], "empty": []}
    res = evaluate_processbench(probs, truth, 0.5, n_resamples=50)
    assert res.subsets["ok"].f1 == 1.0
    assert math.isnan(res.subsets["all_correct"].f1)
    assert res.subsets["all_correct"].acc_correct == 1.0
    assert math.isnan(res.subsets["empty"].f1)
    assert all(math.isnan(x) for x in res.subsets["all_correct"].f1_ci)
    assert math.isnan(res.headline_f1) and all(math.isnan(x) for x in res.headline_ci)


def test_evaluate_rejects_mismatched_input():
    with pytest.raises(ValueError, match="subsets differ"):
        evaluate_processbench({"a": [[0.9]]}, {"b": [-1]}, 0.5)
    with pytest.raises(ValueError, match="subset 'a': 2 items with probabilities, 1 truths"):
        evaluate_processbench({"a": [[0.9], [0.8]]}, {"a": [-1]}, 0.5)
    with pytest.raises(ValueError, match="first error 2 but only 2 step probabilities"):
        evaluate_processbench({"a": [[0.9, 0.1]]}, {"a": [2]}, 0.5)


def _split(error_prob: float, correct_min: float, n: int) -> tuple[dict, dict]:
    """Two subsets whose best τ lies in (error_prob, correct_min]: there the F1 is 1."""
    rng = np.random.default_rng(int(error_prob * 100))
    probs: dict[str, list[list[float]]] = {"gsm": [], "math": []}
    truth: dict[str, list[int]] = {"gsm": [], "math": []}
    for name in probs:
        for i in range(n):
            n_steps = int(rng.integers(2, 6))
            good = list(rng.uniform(correct_min, 1.0, size=n_steps))
            if i % 2:
                first = int(rng.integers(n_steps))
                good[first] = error_prob
                probs[name].append(good)
                truth[name].append(first)
            else:
                good[int(rng.integers(n_steps))] = correct_min
                probs[name].append(good)
                truth[name].append(-1)
    return probs, truth


def test_choose_threshold_uses_only_the_data_it_is_given():
    dev_probs, dev_truth = _split(0.29, 0.31, 20)
    test_probs, test_truth = _split(0.79, 0.81, 20)
    tau = choose_threshold(dev_probs, dev_truth)
    assert tau == pytest.approx(0.3)
    assert choose_threshold(test_probs, test_truth) == pytest.approx(0.8)
    honest = evaluate_processbench(test_probs, test_truth, tau, n_resamples=100)
    oracle = oracle_threshold_result(test_probs, test_truth, n_resamples=100)
    assert oracle.label == ORACLE_LABEL
    assert "upper bound" in oracle.to_dict()["label"]
    assert oracle.threshold == pytest.approx(0.8)
    assert oracle.headline_f1 == 1.0
    # At τ = 0.3 no error step (0.79) is flagged: acc_error = 0, F1 = 0 on the test split.
    assert honest.headline_f1 == 0.0
    assert honest.label != ORACLE_LABEL


def test_choose_threshold_is_the_argmax_of_the_headline_ties_to_smallest():
    rng = np.random.default_rng(3)
    probs = {s: [list(rng.random(int(rng.integers(1, 5)))) for _ in range(30)] for s in "ab"}
    truth = {
        s: [int(rng.integers(-1, len(p))) if rng.random() < 0.6 else -1 for p in probs[s]]
        for s in "ab"
    }
    grid = [round(x, 2) for x in np.linspace(0.05, 0.95, 19)]
    tau = choose_threshold(probs, truth, grid)
    headlines = {g: evaluate_processbench(probs, truth, g, n_resamples=2).headline_f1 for g in grid}
    best = max(headlines.values())
    assert headlines[tau] == pytest.approx(best)
    assert tau == min(g for g, h in headlines.items() if h == pytest.approx(best))
    # A flat grid (every τ below all probabilities predicts -1 everywhere) ties: smallest wins.
    assert choose_threshold(probs, truth, [-0.5, -1.0, -0.2]) == -1.0


def test_choose_threshold_refuses_undefined_f1():
    with pytest.raises(ValueError, match="subset 'x'.*no erroneous or no all-correct"):
        choose_threshold({"x": [[0.9], [0.2]]}, {"x": [-1, -1]})


@pytest.mark.parametrize("tau", [math.nan, math.inf, -math.inf])
def test_a_non_finite_threshold_is_refused(tau):
    """A NaN τ compares false with every probability: it would predict 'no error' everywhere."""
    with pytest.raises(ValueError, match="threshold must be a finite number"):
        evaluate_processbench({"a": [[0.9, 0.1], [0.9]]}, {"a": [1, -1]}, tau)
    with pytest.raises(ValueError, match="threshold must be a finite number"):
        predict_first_error([0.9, 0.1], tau)


@pytest.mark.parametrize("bad", [math.nan, math.inf])
def test_non_finite_scores_are_named_not_blamed_on_the_grid(bad):
    probs = {"a": [[0.9, 0.1], [0.9, 0.8]], "b": [[0.9], [0.7, bad]]}
    truth = {"a": [1, -1], "b": [-1, -1]}
    with pytest.raises(ValueError, match=r"subset 'b' item 1: step probabilities\[1\] is"):
        choose_threshold(probs, truth)
    with pytest.raises(ValueError, match=r"subset 'b' item 1: step probabilities\[1\] is"):
        evaluate_processbench(probs, truth, 0.5)


def test_choose_threshold_refuses_an_empty_subset_by_name():
    with pytest.raises(ValueError, match="subset 'e' has no items"):
        choose_threshold({"e": []}, {"e": []})
    with pytest.raises(ValueError, match="subset 'e' has no items"):
        choose_threshold({"a": [[0.9, 0.1], [0.9]], "e": []}, {"a": [1, -1], "e": []})


class _Lookup:
    """A stand-in PRM: each trajectory's step probabilities, looked up by id."""

    def __init__(self, probs: dict[str, list[float]]) -> None:
        self.probs = probs

    def predict(self, trajectories):
        return [self.probs[t.id] for t in trajectories]


def _as_trajectories(split: str, probs: dict, truth: dict) -> tuple[dict, dict[str, list[float]]]:
    subsets, lookup = {}, {}
    for name, items in probs.items():
        subsets[name] = []
        for i, (p, first) in enumerate(zip(items, truth[name], strict=True)):
            t_id = f"{split}-{name}-{i}"
            steps = [f"s{k}" for k in range(len(p))]
            subsets[name].append(Trajectory(id=t_id, question="q", steps=steps, first_error=first))
            lookup[t_id] = p
    return subsets, lookup


def test_evaluate_prm_is_tau_from_dev_then_test_with_the_given_seed():
    dev_probs, dev_truth = _split(0.29, 0.31, 20)
    test_probs, test_truth = _split(0.55, 0.6, 20)
    dev, dev_lookup = _as_trajectories("dev", dev_probs, dev_truth)
    test, test_lookup = _as_trajectories("test", test_probs, test_truth)
    got = evaluate_prm(_Lookup({**dev_lookup, **test_lookup}), dev, test, seed=3)
    tau = choose_threshold(dev_probs, dev_truth)
    assert got.threshold_from_dev == tau and got.dev_f1 == 1.0
    want = evaluate_processbench(test_probs, test_truth, tau, seed=3)
    oracle = oracle_threshold_result(test_probs, test_truth, seed=3)
    assert got.to_dict() == {
        "threshold_from_dev": tau,
        "test": want.to_dict(),
        "test_oracle": oracle.to_dict(),
    }
    assert got.costs.wall_seconds > 0
