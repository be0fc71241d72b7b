"""CPMI as a zero-shot verifier of real GSM8K solutions (`cpmi_lib.studies.real_verifier`).

The statistics are checked on a hand-made frame whose AUROCs and Best-of-4 outcomes are worked
out by hand; the scoring itself runs once on two real problems with SmolLM2.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from cpmi_lib.studies import real_verifier as rv

GSM8K = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "gsm8k"
SOLVERS = ("6b_finetuning", "6b_verification", "175b_finetuning", "175b_verification")


def _frame(problems: list[tuple[list[bool], list[list[float]], list[str]]]) -> pd.DataFrame:
    rows = []
    for p, (correct, steps, answers) in enumerate(problems):
        for solver, ok, s, a in zip(SOLVERS, correct, steps, answers, strict=True):
            rows.append(
                {
                    "id": f"gsm8k-sol-{p}-{solver}",
                    "problem": f"gsm8k-sol-{p}",
                    "solver": solver,
                    "is_correct": ok,
                    "final_answer": a,
                    "n_steps": len(s),
                    "cpmi_min": min(s),
                    "cpmi_last": s[-1],
                    "cpmi_mean": float(np.mean(s)),
                    "step_cpmi": s,
                }
            )
    return pd.DataFrame(rows)


# P0: the right solutions score highest (within AUROC 1); P1: the right one scores lowest
# (within 0); P2: all wrong (no within-problem pair). Majority: P0 "5" (right), P1 "4" (wrong).
HAND = _frame(
    [
        ([True, True, False, False], [[0.9], [0.8], [0.1], [0.2]], ["5", "5", "7", "8"]),
        ([True, False, False, False], [[0.1], [0.5], [0.6], [0.7]], ["3", "4", "4", "6"]),
        ([False, False, False, False], [[0.3], [0.2], [0.4], [0.0]], ["1", None, "2", "2"]),
    ]
)


def test_auroc_table_pooled_within_problem_and_control_by_hand():
    # with 3 problems some resamples hold no right solution: the CI is undefined, not faked
    with pytest.warns(RuntimeWarning, match="undefined"):
        table = rv.auroc_table(HAND, seed=0, n_resamples=200).set_index("aggregate")
    row = table.loc["min"]
    expected = roc_auc_score(HAND["is_correct"], HAND["cpmi_min"])
    assert row["auroc"] == pytest.approx(expected)
    assert row["auroc_within_problem"] == pytest.approx(4 / 7)  # P0: 4 of 4 pairs, P1: 0 of 3
    assert row["within_pairs"] == 7 and row["n_problems"] == 3 and row["n_correct"] == 3
    assert math.isnan(row["ci_low"]) and math.isnan(row["ci_high"])
    assert 0 <= row["shuffled_auroc"] <= 1
    # one step per solution: every aggregate is the same score
    assert table["auroc"].nunique() == 1


def test_shuffled_control_is_near_chance_where_the_scores_separate_perfectly():
    rng = np.random.default_rng(1)
    problems = []
    for _ in range(60):
        correct = list(rng.random(4) < 0.5)
        steps = [[float(ok) + 0.01 * i] for i, ok in enumerate(correct)]
        problems.append((correct, steps, ["1", "2", "3", "4"]))
    table = rv.auroc_table(_frame(problems), seed=0, n_resamples=200).set_index("aggregate")
    assert table.loc["min", "auroc"] == 1.0
    assert table.loc["min", "ci_low"] == table.loc["min", "ci_high"] == 1.0
    within = table.loc["min", ["within_ci_low", "auroc_within_problem", "within_ci_high"]]
    assert list(within) == [1.0, 1.0, 1.0]
    assert abs(table.loc["min", "shuffled_auroc"] - 0.5) < 0.1


def test_best_of_4_by_hand():
    cfg = rv.VerifierConfig(problems=3, selection="min")
    bo4, tests = rv.best_of_4(HAND, cfg, n_resamples=200)
    acc = bo4.set_index("selector")["accuracy"]
    assert acc["CPMI (min step)"] == pytest.approx(1 / 3)  # P0 right; P1 picks 0.7 (wrong)
    assert acc["majority vote"] == pytest.approx(1 / 3)
    assert acc["oracle (pass@4)"] == pytest.approx(2 / 3)
    majority = tests.set_index("b").loc["majority"]
    assert (majority["a_only"], majority["b_only"], majority["p_value"]) == (0, 0, 1.0)
    assert set(bo4["n_problems"]) == {3}
    # P2's second solution states no answer (None, NaN in the frame): it abstains from the vote
    assert rv.pools(HAND)[2].candidates[1].final_answer is None


def test_a_problem_missing_a_solution_has_no_pool():
    frame = HAND[HAND["id"] != "gsm8k-sol-2-6b_finetuning"]
    assert [p.problem_id for p in rv.pools(frame)] == ["gsm8k-sol-0", "gsm8k-sol-1"]
    with pytest.raises(ValueError, match="all four"):
        rv.pools(frame[frame["problem"] == "gsm8k-sol-2"])


def test_headline_names_and_values():
    cfg = rv.VerifierConfig(problems=3)
    with pytest.warns(RuntimeWarning):
        aurocs = rv.auroc_table(HAND, n_resamples=200)
    bo4, _ = rv.best_of_4(HAND, cfg, n_resamples=200)
    entries = rv.headline_entries(aurocs, bo4, cfg)
    assert set(entries) == {
        "real_gsm8k_cpmi_auroc_vs_correct",
        "real_gsm8k_bo4_cpmi",
        "real_gsm8k_bo4_majority",
        "real_gsm8k_bo4_random",
        "real_gsm8k_pass4",
    }
    assert entries["real_gsm8k_pass4"].value == pytest.approx(2 / 3)
    assert entries["real_gsm8k_cpmi_auroc_vs_correct"].n == 12
    assert all(math.isfinite(e.value) for e in entries.values())


def test_config_refuses_what_it_cannot_run():
    with pytest.raises(ValueError, match="templates"):
        rv.VerifierConfig(templates=len(rv.CHAT_INSTRUCTIONS) + 1)
    with pytest.raises(ValueError, match="selection"):
        rv.VerifierConfig(selection="prod")
    with pytest.raises(ValueError, match="problems"):
        rv.VerifierConfig(problems=0)
    with pytest.raises(FileNotFoundError, match="shared/data/gsm8k"):
        rv.gsm8k_solutions_path("/nonexistent")


@pytest.mark.slow
def test_scores_two_real_problems_and_resumes_without_rescoring(smollm2_dir, tmp_path):
    if not (GSM8K / rv.SOLUTIONS_FILE).is_file():
        pytest.skip("../shared/data/gsm8k not found beside the checkout")
    cache = tmp_path / "cache"
    (cache / "models").mkdir(parents=True)
    (cache / "models" / smollm2_dir.name).symlink_to(smollm2_dir)
    cfg = rv.VerifierConfig(problems=2)
    scores = rv.score_solutions(cfg, cache, GSM8K, progress=False)
    frame = scores.frame
    assert len(frame) + len(scores.dropped) == 8 and frame["problem"].nunique() == 2
    assert np.isfinite(frame[["cpmi_min", "cpmi_last", "cpmi_mean"]].to_numpy()).all()
    assert "<|im_start|>assistant" in scores.templates[0]
    labels = next((cache / "real-gsm8k").glob("verifier-*/cpmi.jsonl"))
    before = labels.read_bytes()
    again = rv.score_solutions(cfg, cache, GSM8K, progress=False)
    assert labels.read_bytes() == before  # resumed: nothing relabeled
    pd.testing.assert_frame_equal(again.frame, frame)
    setup = rv.setup_table(cfg, scores, 1.0)
    assert "SmolLM2" in setup["value"].iloc[0]


def test_a_malformed_solutions_row_is_dropped_alone_and_named(tmp_path):
    good = {
        "question": "Q?",
        "ground_truth": "2 + 2 = 4\nA: 4",
        **{k: {"solution": "2 + 2 = 4\nA: 4", "is_correct": True} for k in SOLVERS},
    }
    bad = {**good, "6b_finetuning": {"solution": "x\nA: 3", "is_correct": "yes"}}
    path = tmp_path / rv.SOLUTIONS_FILE
    path.write_text("".join(json.dumps(r) + "\n" for r in (good, bad, good)))
    solutions, errors = rv.read_solutions(path, problems=3)
    assert len(solutions) == 8  # rows 1 and 3, four solutions each
    assert len(errors) == 1 and "6b_finetuning.is_correct" in str(errors[0])
    assert "line 2: field" in str(errors[0])  # the file's line
