"""Best-of-N selection on hand-made pools, and the properties the curves must have."""

import numpy as np
import pytest

from cpmi_lib.core.stats import mcnemar_test
from cpmi_lib.core.trajectory import Trajectory
from cpmi_lib.eval.best_of_n import (
    DEFAULT_METHODS,
    Candidate,
    Pool,
    aggregate,
    best_of_n_curves,
    compare,
    majority_vote,
    oracle,
    per_item_correct,
    prm_weighted_vote,
    random_choice,
    select_best,
)


def _pool(*cands: tuple[str | None, bool, list[float]], pid: str = "p") -> Pool:
    return Pool(pid, [Candidate(a, c, list(p)) for a, c, p in cands])


def test_aggregations_hand_case():
    probs = [0.9, 0.2, 0.8]
    assert aggregate(probs, "min") == pytest.approx(0.2)
    assert aggregate(probs, "prod") == pytest.approx(0.144)
    assert aggregate(probs, "last") == pytest.approx(0.8)
    assert aggregate(probs, "mean") == pytest.approx(0.633333333)
    with pytest.raises(ValueError, match="empty"):
        aggregate([], "min")
    with pytest.raises(ValueError, match="unknown aggregation 'max'"):
        aggregate(probs, "max")  # type: ignore[arg-type]


HAND = _pool(
    ("1", False, [0.9, 0.2, 0.8]),  # min .2   prod .144  last .8  mean .633
    ("2", False, [0.5, 0.5, 0.5]),  # min .5   prod .125  last .5  mean .5
    ("3", True, [0.95, 0.3, 0.6]),  # min .3   prod .171  last .6  mean .617
    ("4", False, [0.5, 0.5, 0.5]),  # ties with index 1
)


@pytest.mark.parametrize(("how", "best"), [("min", 1), ("prod", 2), ("last", 0), ("mean", 0)])
def test_select_best_hand_case(how, best):
    assert select_best(HAND, 4, how) == best


def test_select_best_ties_go_to_lowest_index_and_only_the_first_n_count():
    tie = _pool(("a", False, [0.7]), ("b", True, [0.9]), ("c", True, [0.9]))
    assert select_best(tie, 3, "min") == 1
    assert select_best(tie, 1, "min") == 0
    assert select_best(HAND, 2, "prod") == 0  # index 2 is outside the first 2


def test_weighted_vote_beats_majority_on_a_built_case():
    pool = _pool(
        ("5", False, [0.2, 0.1]),
        ("7", True, [0.9, 0.95]),
        ("5 ", False, [0.3, 0.15]),  # stripped: same answer as "5"
        ("5", False, [0.1, 0.1]),
        ("7", True, [0.8, 0.85]),
    )
    assert majority_vote(pool, 5) == 0  # "5" three times
    assert prm_weighted_vote(pool, 5, "min") == 1  # "7": 0.9 + 0.8 > 0.1 + 0.15 + 0.1
    assert not pool[majority_vote(pool, 5)].correct
    assert pool[prm_weighted_vote(pool, 5, "min")].correct


def test_votes_group_with_a_custom_relation_and_break_ties_by_first_seen():
    pool = _pool(("7", True, [0.5]), ("3", False, [0.5]), ("3", False, [0.5]), ("7", True, [0.5]))
    assert majority_vote(pool, 4) == 0  # 2-2 tie: "7" was seen first
    assert majority_vote(pool, 3) == 1
    same = lambda a, b: float(a) == float(b)  # noqa: E731
    pool = _pool(("3", False, [0.5]), ("7", True, [0.5]), ("7.0", True, [0.5]))
    assert majority_vote(pool, 3) == 0  # "7" and "7.0" differ as strings: three singletons
    assert majority_vote(pool, 3, same) == 1
    assert prm_weighted_vote(pool, 3, "last", same) == 1


def test_answerless_candidates_abstain():
    pool = _pool((None, False, [0.99]), (None, False, [0.99]), ("4", True, [0.1]))
    assert majority_vote(pool, 3) == 2
    assert prm_weighted_vote(pool, 3, "min") == 2
    assert majority_vote(pool, 2) == 0  # nobody answered: the first sample
    assert prm_weighted_vote(pool, 2, "min") == 0


def test_oracle_is_pass_at_n():
    pool = _pool(("1", False, [0.5]), ("2", False, [0.5]), ("3", True, [0.5]))
    assert [oracle(pool, n) for n in (1, 2, 3)] == [False, False, True]


def test_random_choice_is_seeded_and_in_range():
    pool = _pool(*[(str(i), False, [0.5]) for i in range(8)])
    a = [random_choice(pool, 8, np.random.default_rng(5)) for _ in range(3)]
    assert a[0] == a[1] == a[2]
    draws = {random_choice(pool, 4, np.random.default_rng(s)) for s in range(50)}
    assert draws == {0, 1, 2, 3}


def test_selectors_reject_n_out_of_range():
    with pytest.raises(ValueError, match="problem 'p': n=5 but the pool has 4"):
        select_best(HAND, 5, "min")
    with pytest.raises(ValueError, match="n must be >= 1"):
        majority_vote(HAND, 0)


def _random_pools(n_problems: int, k: int, seed: int = 0) -> list[Pool]:
    """Pools where correct solutions get somewhat higher PRM scores and share one answer."""
    rng = np.random.default_rng(seed)
    pools = []
    for p in range(n_problems):
        cands = []
        for _ in range(k):
            correct = bool(rng.random() < 0.3)
            n_steps = int(rng.integers(1, 5))
            probs = np.clip(rng.normal(0.6 + 0.2 * correct, 0.2, n_steps), 0.01, 0.99)
            answer = "42" if correct else str(int(rng.integers(0, 4)))
            cands.append(Candidate(answer, correct, [float(x) for x in probs]))
        pools.append(Pool(f"p{p}", cands))
    return pools


@pytest.fixture(scope="module")
def curves():
    return best_of_n_curves(_random_pools(60, 16), n_resamples=200)


def test_curves_table_shape_and_cis(curves):
    assert list(curves.columns[:6]) == [
        "method",
        "n",
        "accuracy",
        "ci_low",
        "ci_high",
        "n_problems",
    ]
    assert len(curves) == len(DEFAULT_METHODS) * 5
    assert set(curves["n"]) == {1, 2, 4, 8, 16}
    assert (curves["n_problems"] == 60).all()
    assert (
        (curves["ci_low"] <= curves["accuracy"]) & (curves["accuracy"] <= curves["ci_high"])
    ).all()
    for row in curves.itertuples():
        assert row.accuracy == pytest.approx(np.mean(row.correct))
        assert len(row.correct) == 60


def test_pass_at_n_is_monotone_and_bounds_every_selector(curves):
    items = per_item_correct(curves)
    pass_at = [np.mean(items["pass@n"][n]) for n in (1, 2, 4, 8, 16)]
    assert pass_at == sorted(pass_at) and pass_at[-1] > pass_at[0]
    for method, by_n in items.items():
        for n, correct in by_n.items():
            # Per problem, not only on average: a selector can only pick what is in the first n.
            assert all(o or not c for o, c in zip(items["pass@n"][n], correct, strict=True)), (
                method,
                n,
            )


def test_n_equal_one_gives_identical_outcomes_for_all_methods(curves):
    at_one = curves[curves["n"] == 1]
    assert at_one["correct"].nunique() == 1
    assert at_one["accuracy"].nunique() == 1


def test_prm_selection_beats_random_on_informative_scores(curves):
    acc = curves.set_index(["method", "n"])["accuracy"]
    assert acc["prm:mean", 16] > acc["random", 16] + 0.2
    assert acc["majority", 16] > acc["random", 16] + 0.1


def test_random_is_deterministic_for_a_seed():
    pools = _random_pools(40, 8, seed=1)
    kw = {"ns": (4, 8), "methods": ("random",), "n_resamples": 50}
    a = best_of_n_curves(pools, seed=3, **kw)
    b = best_of_n_curves(pools, seed=3, **kw)
    c = best_of_n_curves(pools, seed=4, **kw)
    assert list(a["correct"]) == list(b["correct"])
    assert list(a["correct"]) != list(c["correct"])
    # One n's draws do not depend on which other n's were asked for.
    only8 = best_of_n_curves(pools, seed=3, ns=(8,), methods=("random",), n_resamples=50)
    assert only8["correct"].iloc[0] == a["correct"].iloc[1]


def test_compare_runs_mcnemar_on_the_paired_outcomes(curves):
    items = per_item_correct(curves)
    res = compare(curves, "prm:mean", curves, "random", 16)
    assert res == mcnemar_test(items["prm:mean"][16], items["random"][16])
    assert res.p_value < 0.05
    with pytest.raises(ValueError, match="no row for method 'prm:max' at n=16"):
        compare(curves, "prm:max", curves, "random", 16)


def test_curves_reject_bad_input():
    with pytest.raises(ValueError, match="unknown method 'prm:max'"):
        best_of_n_curves(_random_pools(2, 4), methods=("prm:max",))
    with pytest.raises(ValueError, match="n=8 but the pool has 4"):
        best_of_n_curves(_random_pools(2, 4), ns=(8,), methods=("majority",))


def test_candidate_validation_and_from_trajectory():
    with pytest.raises(ValueError, match="at least one step"):
        Candidate("1", True, [])
    with pytest.raises(ValueError, match="NaN"):
        Candidate("1", True, [0.5, float("nan")])
    t = Trajectory(id="t", question="q", steps=["a", "b"], gold_answer="12", final_answer="12")
    assert Candidate.from_trajectory(t, [0.9, 0.8]) == Candidate("12", True, [0.9, 0.8])
    wrong = Trajectory(id="w", question="q", steps=["a"], gold_answer="12", final_answer="13")
    assert not Candidate.from_trajectory(wrong, [0.9]).correct
    with pytest.raises(ValueError, match="1 step probabilities for 2 steps"):
        Candidate.from_trajectory(t, [0.9])
    no_gold = Trajectory(id="n", question="q", steps=["a"], final_answer="3")
    with pytest.raises(ValueError, match="no gold answer"):
        Candidate.from_trajectory(no_gold, [0.9])
    assert Candidate.from_trajectory(no_gold, [0.9], correct=True).correct
