"""AUROC within wrong answers: against slow double-loop references and a slow cluster bootstrap;
outcome labels score exactly 0.5 there, position labels exactly 0.5 within position."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from cpmi_lib.core.intervals import Resampling
from cpmi_lib.core.trajectory import RecordError, Trajectory, labels_from_first_error
from cpmi_lib.labeling.position import PositionLabeler
from cpmi_lib.labeling.wrong_answers import (
    WrongAnswerAUROC,
    final_correct,
    wrong_answer_auroc,
    wrong_answer_trajectories,
)


def _traj(tid: str, first_error: int, n_steps: int, correct: object) -> Trajectory:
    meta = {} if correct is ... else {"final_correct": correct}
    return Trajectory(
        id=tid,
        question="q?",
        steps=[f"s{i}" for i in range(n_steps)],
        step_labels=labels_from_first_error(n_steps, first_error),
        first_error=first_error,
        metadata=meta,
    )


def _world(n: int, seed: int = 0) -> list[Trajectory]:
    """2-6 steps, prefix labels, each step errs w.p. 0.25; an erroneous solution's final answer
    is wrong w.p. 0.9 (a lucky recovery otherwise), an error-free one is always right."""
    rng = np.random.default_rng(seed)
    out = []
    for j in range(n):
        s = int(rng.integers(2, 7))
        errs = np.flatnonzero(rng.random(s) < 0.25)
        first = int(errs[0]) if errs.size else -1
        correct = first == -1 or bool(rng.random() < 0.1)
        out.append(_traj(f"t{j}", first, s, correct))
    return out


def _noisy_scores(trajs: list[Trajectory], seed: int = 1) -> list[list[float]]:
    """A label source that half-locates errors: truth + noise, with ties (rounded)."""
    rng = np.random.default_rng(seed)
    return [[round(float(y) + rng.normal(0, 0.8), 1) for y in t.step_labels] for t in trajs]


def _pairs_auc(scores, truth, strata) -> tuple[float, int]:
    """Slow double loop over same-stratum (correct, wrong) step pairs, ties 1/2."""
    wins = pairs = 0.0
    for i in range(len(scores)):
        for j in range(len(scores)):
            if strata[i] == strata[j] and truth[i] and not truth[j]:
                pairs += 1
                wins += 1.0 if scores[i] > scores[j] else 0.5 if scores[i] == scores[j] else 0.0
    return wins / pairs, int(pairs)


def _reference(trajs, scores):
    """Slow: select wrong answers by hand, pooled and (i, S)-cell AUROC by the double loop."""
    s, y, cell = [], [], []
    for t, sc in zip(trajs, scores, strict=True):
        if t.metadata["final_correct"]:
            continue
        for i, (x, lab) in enumerate(zip(sc, t.step_labels, strict=True)):
            s.append(x)
            y.append(lab)
            cell.append((i, t.n_steps))
    return _pairs_auc(s, y, [0] * len(s)), _pairs_auc(s, y, cell), len(s)


def _slow_cluster_bootstrap(trajs, scores, n_resamples: int, seed: int) -> tuple[float, float]:
    """Slow pooled cluster bootstrap: draw wrong-answer trajectories, sklearn AUROC per draw."""
    rng = np.random.default_rng(seed)
    chosen = [
        (t, sc) for t, sc in zip(trajs, scores, strict=True) if not t.metadata["final_correct"]
    ]
    values = []
    for _ in range(n_resamples):
        drawn = [chosen[k] for k in rng.integers(0, len(chosen), len(chosen))]
        y = [lab for t, _ in drawn for lab in t.step_labels]
        x = [v for _, sc in drawn for v in sc]
        values.append(roc_auc_score(y, x))
    lo, hi = np.quantile(values, [0.025, 0.975])
    return float(lo), float(hi)


def test_final_correct_reads_booleans_and_refuses_the_unknown():
    assert final_correct(_traj("a", -1, 2, True)) is True
    assert final_correct(_traj("a", 0, 2, False)) is False
    assert final_correct(_traj("a", 0, 2, 0)) is False
    assert final_correct(_traj("a", -1, 2, np.bool_(True))) is True
    with pytest.raises(RecordError, match="'b'.*final_correct.*missing"):
        final_correct(_traj("b", 0, 2, ...))
    with pytest.raises(RecordError, match="unknown"):
        final_correct(_traj("c", 0, 2, None))
    with pytest.raises(RecordError, match="must be a boolean"):
        final_correct(_traj("d", 0, 2, "false"))  # a string is not silently truthy
    trajs = [_traj("a", -1, 2, True), _traj("b", 1, 3, False)]
    assert [t.id for t in wrong_answer_trajectories(trajs)] == ["b"]


def test_values_equal_slow_references():
    trajs = _world(70)
    scores = _noisy_scores(trajs)
    res = wrong_answer_auroc(trajs, scores, options=Resampling(300))
    (pooled, n_pairs), (within, n_within), n_steps = _reference(trajs, scores)
    assert res.value == pytest.approx(pooled, abs=1e-12)
    assert res.within_position == pytest.approx(within, abs=1e-12)
    assert (res.n_pairs, res.n_pairs_within_position, res.n_steps) == (n_pairs, n_within, n_steps)
    wrong = [t for t in trajs if not t.metadata["final_correct"]]
    assert res.n_trajectories == len(wrong)
    assert res.n_right_answers_excluded == len(trajs) - len(wrong)
    assert 0.5 < res.within_position < res.value  # position inflates the pooled value
    assert res.ci[0] <= res.value <= res.ci[1]
    assert res.within_position_ci[0] <= res.within_position <= res.within_position_ci[1]


def test_pooled_interval_agrees_with_a_slow_cluster_bootstrap():
    trajs = _world(90, seed=2)
    scores = _noisy_scores(trajs, seed=3)
    res = wrong_answer_auroc(trajs, scores, options=Resampling(2000, seed=0))
    lo, hi = _slow_cluster_bootstrap(trajs, scores, 400, seed=5)
    assert res.ci[0] == pytest.approx(lo, abs=0.03) and res.ci[1] == pytest.approx(hi, abs=0.03)


def test_outcome_labels_score_exactly_one_half():
    """Every step gets its trajectory's final-answer correctness: constant among wrong answers."""
    trajs = _world(60, seed=4)
    outcome = [[float(t.metadata["final_correct"])] * t.n_steps for t in trajs]
    res = wrong_answer_auroc(trajs, outcome, options=Resampling(200))
    assert res.value == 0.5 and res.within_position == 0.5
    assert res.ci == (0.5, 0.5) and res.within_position_ci == (0.5, 0.5)


def test_position_labels_score_one_half_within_position_only():
    trajs = _world(120, seed=6)
    labeler = PositionLabeler.fit(trajs)
    res = wrong_answer_auroc(trajs, labeler.scores(trajs), options=Resampling(200))
    assert res.within_position == 0.5 and res.within_position_ci == (0.5, 0.5)
    assert res.value > 0.6  # position alone "locates" errors pooled


def test_truth_scores_one_and_labels_argument():
    trajs = _world(50, seed=7)
    truth = [[float(y) for y in t.step_labels] for t in trajs]
    assert wrong_answer_auroc(trajs, truth, options=Resampling(100)).value == 1.0
    # explicit labels (aligned list, or mapping by id) replace the step_labels
    flipped = [[not y for y in t.step_labels] for t in trajs]
    assert wrong_answer_auroc(trajs, truth, flipped, Resampling(100)).value == 0.0
    by_id = {t.id: f for t, f in zip(trajs, flipped, strict=True)}
    assert wrong_answer_auroc(trajs, truth, by_id, Resampling(100)).value == 0.0


def test_record_is_json_safe():
    trajs = _world(80, seed=8)
    res = wrong_answer_auroc(trajs, _noisy_scores(trajs), options=Resampling(100))
    assert isinstance(res, WrongAnswerAUROC)
    d = res.to_dict()
    assert d["auroc"] == res.value and d["ci"] == list(res.ci)
    assert d["auroc_within_position"] == res.within_position
    assert d["within_position_ci"] == list(res.within_position_ci)


def test_an_interval_undefined_on_some_resample_is_none_never_nan():
    """Few wrong answers: some resample has no (correct, wrong) pair in any (i, S) cell."""
    trajs = _world(40, seed=8)
    with pytest.warns(RuntimeWarning, match="undefined"):
        res = wrong_answer_auroc(trajs, _noisy_scores(trajs), options=Resampling(100))
    assert res.within_position is not None and res.within_position_ci is None
    assert res.to_dict()["within_position_ci"] is None and res.ci is not None


def test_bad_input_raises_clearly():
    trajs = _world(30, seed=9)
    scores = _noisy_scores(trajs)
    with pytest.raises(ValueError, match="score lists"):
        wrong_answer_auroc(trajs, scores[:-1])
    with pytest.raises(RecordError, match="scores"):
        wrong_answer_auroc(trajs, [s[:-1] for s in scores])
    bad = [list(s) for s in scores]
    k = next(j for j, t in enumerate(trajs) if not t.metadata["final_correct"])
    bad[k][0] = float("nan")
    with pytest.raises(ValueError, match="finite"):
        wrong_answer_auroc(trajs, bad)
    right = [t for t in trajs if t.metadata["final_correct"]]
    with pytest.raises(ValueError, match="none of the"):
        wrong_answer_auroc(right, [[0.0] * t.n_steps for t in right])
    all_wrong_at_once = [_traj(f"w{j}", 0, 3, False) for j in range(4)]
    with pytest.raises(ValueError, match="all 12 steps.*are wrong"):
        wrong_answer_auroc(all_wrong_at_once, [[0.1, 0.2, 0.3]] * 4)
    unknown = [*trajs, _traj("u", 1, 3, ...)]
    with pytest.raises(RecordError, match="final_correct"):
        wrong_answer_auroc(unknown, [*scores, [0.0, 0.0, 0.0]])
    dup = [_traj("same", 1, 3, False), _traj("same", 2, 3, False)]
    with pytest.raises(ValueError, match="unique"):
        wrong_answer_auroc(dup, [[0.0, 0.0, 0.0]] * 2)
