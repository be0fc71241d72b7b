"""Position controls: stratified AUROC against slow references, the position-only labeler."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from cpmi_lib.core.intervals import Resampling
from cpmi_lib.core.roc import (
    _pair_tables,
    _stratified_inputs,
    _weighted_u,
    auroc,
    stratified_auroc,
    stratified_auroc_ci,
)
from cpmi_lib.core.trajectory import RecordError, Trajectory, labels_from_first_error
from cpmi_lib.labeling.position import (
    DEFAULT_PRIOR_STRENGTH,
    SCORE_FIELD,
    TARGET_TRANSFORM,
    PositionLabeler,
    cross_fit_scores,
    position_auroc,
    position_strata,
)
from cpmi_lib.prm.targets import make_target_transform, scores_for_trajectories


def _traj(tid: str, n_steps: int, labels: list[bool] | None) -> Trajectory:
    return Trajectory(
        id=tid, question="q?", steps=[f"s{i}" for i in range(n_steps)], step_labels=labels
    )


def _prefix_world(n: int, seed: int = 0) -> list[Trajectory]:
    """Trajectories of 2-6 steps with prefix labels: each step errs with probability 0.25, so
    late steps are more often wrong."""
    rng = np.random.default_rng(seed)
    out = []
    for j in range(n):
        s = int(rng.integers(2, 7))
        errs = np.flatnonzero(rng.random(s) < 0.25)
        first = int(errs[0]) if errs.size else -1
        out.append(_traj(f"t{j}", s, labels_from_first_error(s, first)))
    return out


def _reference_stratified(scores, truth, strata) -> float:
    """Double loop over same-stratum (positive, negative) pairs, ties 1/2."""
    wins = pairs = 0.0
    for a in range(len(scores)):
        for b in range(len(scores)):
            if strata[a] == strata[b] and truth[a] and not truth[b]:
                pairs += 1
                wins += 1.0 if scores[a] > scores[b] else 0.5 if scores[a] == scores[b] else 0.0
    return wins / pairs


def _random_data(seed: int, n: int = 300):
    rng = np.random.default_rng(seed)
    scores = rng.integers(0, 6, n).astype(float)  # few levels: many ties
    strata = rng.integers(0, 5, n).tolist()
    truth = (rng.random(n) < 0.3 + 0.1 * np.asarray(strata)).tolist()
    return scores, truth, strata


# ------------------------------------------------------------------ stratified AUROC


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_stratified_auroc_equals_double_loop_with_ties(seed):
    scores, truth, strata = _random_data(seed)
    res = stratified_auroc(scores, truth, strata)
    assert res.auroc == pytest.approx(_reference_stratified(scores, truth, strata), abs=1e-12)
    assert res.n == len(scores)
    assert res.n_pairs == sum(s.n_pos * s.n_neg for s in res.strata)


def test_per_stratum_values_equal_sklearn():
    scores, truth, strata = _random_data(3)
    s, t, g = np.asarray(scores), np.asarray(truth), np.asarray(strata)
    res = stratified_auroc(scores, truth, strata)
    assert [p.stratum for p in res.strata] == sorted(set(strata))
    for p in res.strata:
        m = g == p.stratum
        assert (p.n, p.n_pos, p.n_neg) == (m.sum(), t[m].sum(), (~t[m]).sum())
        assert p.auroc == pytest.approx(roc_auc_score(t[m], s[m]), abs=1e-12)


def test_one_class_stratum_is_none_and_carries_no_weight():
    scores = [0.9, 0.1, 0.5, 0.7, 0.2]
    truth = [True, False, True, True, True]
    strata = [0, 0, 1, 1, 1]  # stratum 1: positives only
    res = stratified_auroc(scores, truth, strata)
    assert res.strata[1].auroc is None and res.strata[1].n_pos == 3
    assert res.auroc == 1.0 and res.n_pairs == 1
    assert stratified_auroc([1.0, 2.0], [True, True], [0, 1]).auroc is None
    json.dumps(stratified_auroc(scores, truth, [(0, 2)] * 2 + [(1, 3)] * 3).to_dict())


def test_pure_function_of_position_is_exactly_half_within_but_not_pooled():
    trajs = _prefix_world(400)
    flat_truth = [y for t in trajs for y in t.step_labels]
    strata = position_strata(trajs)
    by_position = [-float(i) for i in strata]  # "later steps are worse"
    pooled = auroc(by_position, flat_truth)
    assert pooled > 0.65  # position alone is worth a lot when pooled...
    assert stratified_auroc(by_position, flat_truth, strata).auroc == 0.5  # ...and nothing here
    lo, hi = stratified_auroc_ci(by_position, flat_truth, strata, _ids(trajs))
    assert lo == hi == 0.5


def _ids(trajs: list[Trajectory]) -> list[str]:
    return [t.id for t in trajs for _ in range(t.n_steps)]


def test_cluster_bootstrap_contains_estimate_and_is_reproducible():
    trajs = _prefix_world(150, seed=4)
    rng = np.random.default_rng(5)
    truth = [y for t in trajs for y in t.step_labels]
    strata = position_strata(trajs)
    scores = np.asarray(truth, dtype=float) + rng.normal(0, 1.0, len(truth))
    point = stratified_auroc(scores, truth, strata).auroc
    opts = Resampling(n_resamples=500, seed=7)
    ci = stratified_auroc_ci(scores, truth, strata, _ids(trajs), opts)
    assert ci[0] < point < ci[1]
    assert ci == stratified_auroc_ci(scores, truth, strata, _ids(trajs), opts)
    assert ci != stratified_auroc_ci(scores, truth, strata, _ids(trajs), Resampling(500, seed=8))


def test_cluster_bootstrap_resamples_trajectories_not_steps():
    """Duplicating every trajectory's steps inside it changes nothing for a cluster bootstrap
    (same clusters, same weights), while a step bootstrap would narrow the interval."""
    trajs = _prefix_world(80, seed=6)
    rng = np.random.default_rng(1)
    truth = [y for t in trajs for y in t.step_labels]
    strata = position_strata(trajs)
    ids = _ids(trajs)
    scores = list(np.asarray(truth, dtype=float) + rng.normal(0, 1.0, len(truth)))
    opts = Resampling(n_resamples=300, seed=0)
    ci = stratified_auroc_ci(scores, truth, strata, ids, opts)
    ci2 = stratified_auroc_ci(scores * 2, truth * 2, strata * 2, ids * 2, opts)
    assert ci2 == pytest.approx(ci, abs=1e-12)
    steps = stratified_auroc_ci(scores * 2, truth * 2, strata * 2, list(range(2 * len(ids))), opts)
    assert steps[1] - steps[0] < 0.8 * (ci[1] - ci[0])


def test_cluster_weights_match_explicit_resample():
    """The CI's weighted U (cluster drawn w times counts w times) equals the stratified AUROC of
    the data with each cluster's steps written out w times."""
    scores, truth, strata = _random_data(9, n=120)
    clusters = [j // 4 for j in range(120)]  # 30 clusters of 4 steps
    s, t, codes, keys = _stratified_inputs(scores, truth, strata)
    tables = _pair_tables(s, t, codes, len(keys), np.asarray(clusters), 30)
    w = np.random.default_rng(0).multinomial(30, [1 / 30] * 30, size=3).astype(float)
    u, pairs = _weighted_u(w, tables)
    for b in range(3):
        rep = [j for j in range(120) for _ in range(int(w[b, clusters[j]]))]
        expected = stratified_auroc(s[rep], t[rep], [strata[j] for j in rep]).auroc
        assert u[:, b].sum() / pairs[:, b].sum() == pytest.approx(expected, abs=1e-12)


def test_stratified_inputs_are_checked():
    with pytest.raises(ValueError, match="aligned"):
        stratified_auroc([0.1, 0.2], [True, False], [0])
    with pytest.raises(ValueError, match="not finite"):
        stratified_auroc([0.1, float("nan")], [True, False], [0, 0])
    with pytest.raises(ValueError, match="no stratum"):
        stratified_auroc_ci([0.1, 0.2], [True, False], [0, 1], ["a", "b"])


def test_position_auroc_report():
    trajs = _prefix_world(120, seed=2)
    scores = [[-float(i) for i in range(t.n_steps)] for t in trajs]
    r = position_auroc(trajs, scores, n_resamples=200)
    assert r["auroc_pooled"] > 0.6 and r["auroc_within_position"] == 0.5
    assert r["ci"] == [0.5, 0.5]
    assert [p["stratum"] for p in r["per_position"]] == list(range(6))
    json.dumps(r, allow_nan=False)
    r2 = position_auroc(trajs, scores, key="index_and_length", n_resamples=200)
    assert r2["per_position"][0]["stratum"] == [0, 2]


# ------------------------------------------------------------------ the position labeler


def _cell_world() -> tuple[list[Trajectory], dict[tuple[int, int], float]]:
    """Known cell rates, independent labels (not prefix) so each cell's rate is set exactly."""
    rates = {(0, 2): 0.9, (1, 2): 0.3, (0, 3): 0.6, (1, 3): 0.5, (2, 3): 0.1}
    rng = np.random.default_rng(0)
    trajs = []
    for j in range(4000):
        s = 2 + j % 2
        labels = [bool(rng.random() < rates[(i, s)]) for i in range(s)]
        trajs.append(_traj(f"c{j}", s, labels))
    return trajs, rates


def test_labeler_recovers_cell_rates_and_follows_its_formula():
    trajs, rates = _cell_world()
    lab = PositionLabeler.fit(trajs)
    for (i, s), r in rates.items():
        assert lab.rate(i, s) == pytest.approx(r, abs=0.03)
    m = DEFAULT_PRIOR_STRENGTH
    k, n = lab.global_counts
    g = (k + 1) / (n + 2)
    k1, n1 = lab.positions[1]
    p1 = (k1 + m * g) / (n1 + m)
    k13, n13 = lab.cells[(1, 3)]
    assert lab.rate(1, 3) == pytest.approx((k13 + m * p1) / (n13 + m), rel=1e-12)
    assert lab.score(3) == [lab.rate(i, 3) for i in range(3)]


def test_labeler_shrinks_empty_cells_to_position_then_global_rate():
    trajs, _ = _cell_world()
    lab = PositionLabeler.fit(trajs)
    assert (0, 5) not in lab.cells
    assert lab.rate(0, 5) == lab.position_rate(0)  # unseen (i, S): the rate at i
    k0, n0 = lab.positions[0]
    assert lab.rate(0, 5) == pytest.approx(k0 / n0, abs=1e-3)
    assert 5 not in lab.positions
    assert lab.rate(5, 8) == pytest.approx(lab.global_rate)  # unseen i: the global rate
    k, n = lab.global_counts
    assert lab.global_rate == pytest.approx((k + 1) / (n + 2))


def test_labeler_small_cells_are_pulled_toward_position_rate():
    many = [_traj(f"a{j}", 2, [True, j % 2 == 0]) for j in range(100)]  # rate at i=1: 0.5
    one = [_traj("b", 3, [True, True, False])]  # cell (1, 3): 1 of 1 correct
    lab = PositionLabeler.fit(many + one, prior_strength=4.0)
    p1 = lab.position_rate(1)
    assert lab.rate(1, 3) == pytest.approx((1 + 4.0 * p1) / (1 + 4.0))
    assert p1 < lab.rate(1, 3) < 1.0


def test_labeler_deterministic_roundtrip_finite():
    trajs = _prefix_world(300, seed=3)
    a = PositionLabeler.fit(trajs)
    b = PositionLabeler.fit(list(reversed(trajs)))
    assert a == b and a.scores(trajs) == b.scores(trajs)
    d = json.loads(json.dumps(a.to_dict(), allow_nan=False))
    c = PositionLabeler.from_dict(d)
    assert c == a and c.scores(trajs) == a.scores(trajs)
    for s in range(1, 15):
        assert all(math.isfinite(v) and 0 < v < 1 for v in c.score(s))
    # Degenerate training data (every step right, or wrong) still gives finite, open-interval rates.
    for y in (True, False):
        lab = PositionLabeler.fit([_traj("x", 2, [y, y])])
        assert all(0 < v < 1 and math.isfinite(v) for s in (1, 2, 9) for v in lab.score(s))
    with pytest.raises(ValueError, match="format"):
        PositionLabeler.from_dict({**d, "format": 99})


def test_labeler_refuses_unlabeled_and_bad_labels():
    trajs = [_traj("ok", 2, [True, False]), _traj("nolab", 3, None)]
    with pytest.raises(RecordError, match="'nolab'.*step_labels"):
        PositionLabeler.fit(trajs)
    with pytest.raises(RecordError, match="'nolab'.*labels"):
        PositionLabeler.fit(trajs, {"ok": [1, 0]})
    lab = PositionLabeler.fit(trajs, {"ok": [1, 0], "nolab": [1, 1, 0]})  # given labels are used
    assert lab.cells[(2, 3)] == (0, 1)
    with pytest.raises(RecordError, match=r"'ok'.*labels\[1\]"):
        PositionLabeler.fit(trajs, [[1, 0.5], [1, 1, 1]])
    with pytest.raises(RecordError, match="'ok'.*1 labels for 2 steps"):
        PositionLabeler.fit(trajs, [[1], [1, 1, 1]])
    with pytest.raises(ValueError, match="no trajectories"):
        PositionLabeler.fit([])
    with pytest.raises(ValueError, match="prior_strength"):
        PositionLabeler.fit(trajs[:1], prior_strength=0.0)


def test_label_records_feed_the_mc_soft_target_transform():
    train = _prefix_world(200, seed=1)
    dev = _prefix_world(30, seed=2)
    lab = PositionLabeler.fit(train)
    records = lab.label_records(dev)
    json.dumps(records, allow_nan=False)
    scores = scores_for_trajectories(list(reversed(dev)), records, SCORE_FIELD)
    assert scores == lab.scores(list(reversed(dev)))
    transform = make_target_transform(TARGET_TRANSFORM).fit(lab.scores(train))
    assert transform.transform(scores[0]) == scores[0]  # rates are soft targets as they are


def test_cross_fit_scores_do_not_see_own_labels():
    trajs = _prefix_world(60, seed=8)
    base = cross_fit_scores(trajs, n_folds=4)
    assert base == cross_fit_scores(list(trajs), n_folds=4)
    assert [len(s) for s in base] == [t.n_steps for t in trajs]
    flipped = [t.step_labels for t in trajs]
    flipped[0] = [not y for y in flipped[0]]
    moved = cross_fit_scores(trajs, flipped, n_folds=4)
    assert moved[0] == base[0]  # its own labels never reach its own scores
    assert moved != base  # but they do reach other folds'
