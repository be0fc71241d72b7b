"""Issue 21's controls and fixes without a model: outcome labels, CPMI negatives without the
trajectory's own answer (off by default, so existing label files keep their identity), the
labeler axis's seeds, and the Best-of-N settings out of the samples' key."""

from __future__ import annotations

from dataclasses import replace

import pytest

from cpmi_lib.core.answers import answers_equivalent
from cpmi_lib.core.trajectory import RecordError, Trajectory
from cpmi_lib.experiment.config import (
    NEEDS_TRUTH,
    PRM_LABELS,
    ExperimentConfig,
    default_axis,
    parse_prm_name,
)
from cpmi_lib.experiment.presets import PRESETS, labeler_axis
from cpmi_lib.experiment.stages import bon_pool_name
from cpmi_lib.labeling.label_file import LabelConfig
from cpmi_lib.labeling.negatives import hard_negatives, negatives_for_trajectory
from cpmi_lib.labeling.outcome import outcome_label_records
from cpmi_lib.prm.targets import SCORE_FIELD, make_target_transform, scores_for_trajectories


def _traj(final: str | None, gold: str = "40", tid: str = "t") -> Trajectory:
    steps = ["3 + 5 = 8", "8 * 5 = 41", "41 - 2 = 39"]
    return Trajectory(
        id=tid,
        question="What is (3 + 5) * 5?",
        steps=steps,
        gold_answer=gold,
        final_answer=final,
        metadata={"final_correct": final is not None and answers_equivalent(gold, final)},
    )


# ----------------------------------------------------------------------------- outcome labels


def test_outcome_labels_give_every_step_the_final_answers_grade():
    right, wrong = _traj("40", tid="right"), _traj("39", tid="wrong")
    records = outcome_label_records([right, wrong])
    assert [r["id"] for r in records] == ["right", "wrong"]
    assert [s["value"] for s in records[0]["steps"]] == [1.0, 1.0, 1.0]
    assert [s["value"] for s in records[1]["steps"]] == [0.0, 0.0, 0.0]
    # the PRM reads them as it reads MC values, through the soft MC target
    labeler, target = PRM_LABELS["outcome"]
    assert labeler == "outcome" and "outcome" not in NEEDS_TRUTH
    scores = scores_for_trajectories([wrong, right], records, SCORE_FIELD[target])
    assert make_target_transform(target).fit(scores).transform(scores[1]) == [1.0] * 3
    ungraded = replace(right, metadata={})
    with pytest.raises(RecordError, match="final_correct"):
        outcome_label_records([ungraded])


def test_the_controls_are_prm_label_sources():
    assert PRM_LABELS["cpmi_noself"] == ("cpmi_noself", PRM_LABELS["cpmi"][1])
    assert parse_prm_name("outcome@budget") == ("outcome", "budget")
    assert parse_prm_name("cpmi_noself") == ("cpmi_noself", "base")


# ------------------------------------------------------------- negatives without the own answer


@pytest.mark.parametrize("final", ["39", "41", "39.0", "$39"])
@pytest.mark.parametrize("sources", [("trajectory", "perturb"), ("perturb",)])
def test_no_negative_is_the_trajectorys_own_answer_when_excluded(final, sources):
    """The own answer is a result of the trajectory and a near miss of the gold (40 ± 1): with
    the option, no source gives it (nor an equivalent spelling)."""
    traj = _traj(final)
    for seed in range(20):
        got = negatives_for_trajectory(traj, 6, sources=sources, seed=seed, exclude_own_answer=True)
        assert got, "perturbations of an integer gold never run out at m = 6"
        for n in got:
            assert not answers_equivalent(final, n.answer)
            assert not answers_equivalent(n.answer, final)
            assert not answers_equivalent("40", n.answer)


def test_without_the_option_the_own_answer_is_a_negative_and_nothing_changed():
    """Default off: the same negatives as before the option existed (hard_negatives without
    `exclude`), whose first is the trajectory's own wrong answer (the last result)."""
    traj = _traj("39")
    for seed in range(5):
        default = negatives_for_trajectory(traj, 4, seed=seed)
        assert default == hard_negatives(traj.question, traj.steps, "40", 4, seed=seed)
        assert default[0].answer == "39" and default[0].source == "trajectory"
        assert negatives_for_trajectory(traj, 4, seed=seed, exclude_own_answer=False) == default
    # a trajectory stating no answer has nothing to exclude
    silent = _traj(None)
    assert negatives_for_trajectory(silent, 4, exclude_own_answer=True) == (
        negatives_for_trajectory(silent, 4)
    )
    with pytest.raises(ValueError, match="sequence of answers"):
        hard_negatives("q", ["1 + 1 = 2"], "2", 2, exclude="3")


def test_the_option_is_in_the_label_runs_identity_only_when_on():
    """Label files written before the option keep their identity (their stored config)."""
    before = {
        "method": "cpmi",
        "cpmi": LabelConfig().to_dict()["cpmi"],
        "n_negatives": 4,
        "negative_sources": ["trajectory", "perturb"],
        "seed": 0,
    }
    assert LabelConfig().to_dict() == before
    assert "exclude_own_answer" not in LabelConfig(method="mc").to_dict()
    on = LabelConfig(negative_sources=("perturb",), exclude_own_answer=True).to_dict()
    assert on == before | {"negative_sources": ["perturb"], "exclude_own_answer": True}
    with pytest.raises(ValueError, match="method must be 'cpmi'"):
        LabelConfig(method="mc", exclude_own_answer=True)
    with pytest.raises(ValueError, match="boolean"):
        LabelConfig(exclude_own_answer=1)  # type: ignore[arg-type]


# ------------------------------------------------------------------------ the labeler axis's seeds


def _seeds(name: str) -> dict[str, int | None]:
    return {x.name: x.lm and x.lm.seed for x in labeler_axis(name)}


def test_the_labeler_axis_exists_for_every_seed_and_never_replays_an_ancestors_seed():
    want_default = {"policy": None, "continued": 2, "anticipate": 2, "anticipate_long": 3}
    assert _seeds("default") == want_default
    assert _seeds("default-seed1") == want_default  # no collision there: unchanged
    assert _seeds("default-seed2") == {
        "policy": None,
        "continued": 3,
        "anticipate": 3,
        "anticipate_long": 4,
    }
    for name in ("default", "default-seed1", "default-seed2"):
        for labeler in labeler_axis(name):
            if labeler.lm is not None:
                ancestors = labeler.lm.lineage()[1:]
                assert labeler.lm.seed not in {a.seed for a in ancestors}
                assert labeler.lm.root == PRESETS[name].config.lm
    cfg = PRESETS["default-seed2"].config
    axis = {x.name: x for x in default_axis(cfg.lm, cfg.prm_lm)}
    assert axis["anticipate"].lm == replace(axis["continued"].lm, anticipation=0.3)


# ----------------------------------------------------------------- Best-of-N settings and keys


def test_best_of_n_settings_leave_the_samples_key_alone():
    """600 Best-of-N test problems by default; the samples (and labels below them) keep the
    folders they had with 200, and the pools are named by their own settings."""
    cfg = ExperimentConfig()
    assert cfg.bon_problems == 600
    assert cfg.sample_key() == "80d5d8b92b0b"  # the default's samples before issue 21
    # MC engine of issue 23; was f25ea9c79ee0 (label format 3), 3b97cc710e57
    assert cfg.label_key() == "f06feb0ca4a4"
    smaller = replace(cfg, bon_problems=200)
    assert smaller.sample_key() == cfg.sample_key() and smaller.key() != cfg.key()
    assert replace(cfg, bon_pool=4, bon_ns=(1, 4)).sample_key() == cfg.sample_key()
    assert bon_pool_name("test", 200, 16) == "bon-pool.jsonl"
    assert bon_pool_name("dev", 150, 16) == "bon-pool-dev.jsonl"
    assert bon_pool_name("test", 600, 16) == "bon-pool-test-600x16.jsonl"
    assert PRESETS["default-seed1"].config.sample_key() == "53468c8d50c6"
    assert PRESETS["default-seed2"].config.sample_key() == "77e6088d9369"


def test_the_sampling_seconds_of_whole_rounds_are_their_seconds_exactly():
    """A whole round's share is its measured seconds, not a per-trajectory share summed back
    (56 * s / 56 rounds above s for this s): the set's seconds never exceed every round's."""
    from cpmi_lib.studies.budget import extra_sampling_seconds

    s = 0.3852453064766108
    assert 56 * s / 56 > s  # the rounding the plan must not inherit
    rounds = [
        {"used": 56, "trajectories": 56, "sampling_seconds": s},
        {"used": 3, "trajectories": 10, "sampling_seconds": 1.0},
        {"used": 0, "trajectories": 0, "sampling_seconds": 0.5},
    ]
    plan = {"mc_trajectories": 4, "rounds": rounds}
    assert extra_sampling_seconds(plan, 4) == 0.0
    assert extra_sampling_seconds(plan, 4 + 56) == s
    assert extra_sampling_seconds(plan, 4 + 56 + 2) == pytest.approx(s + 0.2)
    assert extra_sampling_seconds(plan, 10_000) == pytest.approx(s + 0.3)
