"""PRM targets: hand-computed transforms, statistics fitted on training data only, records."""

from __future__ import annotations

import math

import pytest

from cpmi_lib.core.trajectory import RecordError, Trajectory
from cpmi_lib.prm.targets import (
    MAD_TO_SIGMA,
    SCORE_FIELD,
    TARGET_TRANSFORMS,
    NotFittedError,
    TargetTransform,
    make_target_transform,
    scores_for_trajectories,
    scores_from_records,
)


def sigmoid(z: float) -> float:
    return 1.0 / (1.0 + math.exp(-z))


TRAIN = [[1.0, 2.0, 3.0], [4.0, 100.0]]  # median 3, |x - 3| = 2 1 0 1 97 -> MAD 1


def test_names():
    assert set(TARGET_TRANSFORMS) == {"zsig", "sign", "quantile", "mc_soft", "mc_hard", "truth"}
    assert set(SCORE_FIELD) == set(TARGET_TRANSFORMS)
    for name in TARGET_TRANSFORMS:
        assert make_target_transform(name).name == name


def test_zsig_hand_computed():
    t = make_target_transform("zsig").fit(TRAIN)
    assert t.median == 3.0
    assert t.scale == pytest.approx(MAD_TO_SIGMA * 1.0)
    got = t.transform([3.0, 3.0 + 1.4826, 3.0 - 2 * 1.4826, 100.0, -1e6])
    want = [0.5, sigmoid(1.0), sigmoid(-2.0), sigmoid(6.0), sigmoid(-6.0)]  # ±6 clip
    assert got == pytest.approx(want, abs=1e-12)
    assert got[3] == pytest.approx(0.9975273768433653)


def test_zsig_clip_parameter():
    t = make_target_transform("zsig", clip=1.0).fit(TRAIN)
    assert t.transform([100.0, -100.0]) == pytest.approx([sigmoid(1.0), sigmoid(-1.0)])


def test_zsig_zero_mad_is_a_clear_error():
    with pytest.raises(ValueError, match="median absolute deviation.*is 0"):
        make_target_transform("zsig").fit([[1.0, 1.0], [1.0, 2.0]])


def test_statistics_come_from_train_only():
    """Fitted on train, a transform applies the train statistics to other data unchanged."""
    test_scores = [10.0, 20.0, 30.0]
    t = make_target_transform("zsig").fit(TRAIN)
    # z = 7 / 1.4826 = 4.72; 17 / 1.4826 and 27 / 1.4826 are clipped to 6
    assert t.transform(test_scores) == pytest.approx([sigmoid(7 / 1.4826), sigmoid(6), sigmoid(6)])
    assert t.median == 3.0  # transforming did not refit
    refit = make_target_transform("zsig").fit([test_scores])
    assert refit.transform(test_scores) != t.transform(test_scores)

    q = make_target_transform("quantile", q=0.5).fit(TRAIN)  # threshold 3
    assert q.transform(test_scores) == [1.0, 1.0, 1.0]
    assert q.threshold == 3.0


def test_quantile_threshold():
    t = make_target_transform("quantile", q=0.25).fit([[5.0, 1.0], [3.0, 2.0, 4.0]])
    assert t.threshold == 2.0  # numpy linear: position 0.25 * 4 = 1 of [1, 2, 3, 4, 5]
    assert t.transform([1.0, 2.0, 2.5, 6.0]) == [0.0, 0.0, 1.0, 1.0]  # strictly above
    half = make_target_transform("quantile", q=0.5).fit([[1.0, 2.0, 3.0, 4.0]])
    assert half.threshold == 2.5
    with pytest.raises(ValueError, match="q must be within"):
        make_target_transform("quantile", q=1.5)


def test_sign_mc_truth():
    assert make_target_transform("sign").transform([-1.0, 0.0, 0.3]) == [0.0, 0.0, 1.0]
    assert make_target_transform("mc_soft").transform([0, 0.25, 1.0]) == [0.0, 0.25, 1.0]
    assert make_target_transform("mc_hard").transform([0.0, 0.125, 1.0]) == [0.0, 1.0, 1.0]
    assert make_target_transform("truth").transform([True, False, True]) == [1.0, 0.0, 1.0]
    with pytest.raises(ValueError, match=r"within|lie in \[0, 1\]"):
        make_target_transform("mc_soft").transform([0.5, 1.2])
    with pytest.raises(ValueError, match="must lie in"):
        make_target_transform("mc_hard").transform([-0.1])
    with pytest.raises(ValueError, match="booleans"):
        make_target_transform("truth").transform([0.5])
    with pytest.raises(ValueError, match="non-finite"):
        make_target_transform("sign").transform([math.nan])


def test_unfitted_and_bad_names():
    with pytest.raises(NotFittedError, match="'zsig' is not fitted"):
        make_target_transform("zsig").transform([1.0])
    with pytest.raises(NotFittedError):
        make_target_transform("quantile").to_dict()
    with pytest.raises(ValueError, match="unknown target transform 'zscore'.*zsig"):
        make_target_transform("zscore")
    with pytest.raises(ValueError, match="bad parameters"):
        make_target_transform("sign", q=0.3)
    with pytest.raises(ValueError, match="no training scores"):
        make_target_transform("zsig").fit([[]])


@pytest.mark.parametrize(
    "name,kw", [("zsig", {"clip": 4.0}), ("quantile", {"q": 0.3}), ("sign", {}), ("mc_soft", {})]
)
def test_to_dict_round_trip(name, kw):
    t = make_target_transform(name, **kw).fit(TRAIN)
    d = t.to_dict()
    assert d["name"] == name and d["params"] == {**d["params"], **kw}
    back = TargetTransform.from_dict(d)
    probe = [0.0, 0.5, 1.0] if name == "mc_soft" else [-5.0, 2.0, 3.5, 50.0]
    assert back.transform(probe) == t.transform(probe)
    assert back.to_dict() == d


def test_from_dict_needs_stats():
    with pytest.raises(ValueError, match="no fitted 'stats'"):
        TargetTransform.from_dict({"name": "zsig", "params": {}, "stats": {}})


CPMI_RECORDS = [
    {"id": "a", "steps": [{"cpmi": 0.5, "gold_term": 1.0, "neg_term": 0.5}, {"cpmi": -0.25}]},
    {"id": "b", "steps": [{"cpmi": 2}]},
]
MC_RECORDS = [
    {"id": "b", "steps": [{"value": 0.75, "n_correct": 3, "n_rollouts": 4, "hard": True}]},
    {"id": "a", "steps": [{"value": 1.0}, {"value": 0.0}]},
]


def test_scores_from_records():
    assert scores_from_records(CPMI_RECORDS, "cpmi") == [[0.5, -0.25], [2.0]]
    assert scores_from_records(MC_RECORDS, "value") == [[0.75], [1.0, 0.0]]
    with pytest.raises(RecordError, match=r"label record 'a': field 'steps\[0\]\.value': missing"):
        scores_from_records(CPMI_RECORDS + [{"id": "x", "steps": []}], "value")
    with pytest.raises(RecordError, match=r"label record 'x': field 'steps'"):
        scores_from_records([{"id": "x", "steps": []}], "cpmi")
    with pytest.raises(RecordError, match=r"'c'.*steps\[0\]\.cpmi.*finite number"):
        scores_from_records([{"id": "c", "steps": [{"cpmi": None}]}], "cpmi")


def _traj(tid: str, n: int, labels: list[bool] | None = None) -> Trajectory:
    return Trajectory(id=tid, question="q?", steps=[f"s{i}" for i in range(n)], step_labels=labels)


def test_scores_for_trajectories_align_by_id():
    trajs = [_traj("a", 2, [True, False]), _traj("b", 1, [True])]
    assert scores_for_trajectories(trajs, MC_RECORDS, "value") == [[1.0, 0.0], [0.75]]
    assert scores_for_trajectories(trajs, [], None) == [[1.0, 0.0], [1.0]]
    with pytest.raises(RecordError, match="trajectory 'z'.*no label record"):
        scores_for_trajectories([_traj("z", 1)], MC_RECORDS, "value")
    with pytest.raises(RecordError, match="label record 'b'.*1 scores for a trajectory of 2"):
        scores_for_trajectories([_traj("b", 2)], MC_RECORDS, "value")
    with pytest.raises(RecordError, match="trajectory 'n'.*step_labels"):
        scores_for_trajectories([_traj("n", 1)], [], None)
