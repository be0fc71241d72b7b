"""Results → tables: every row and number comes from the result it was made from."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from cpmi_lib.core.costs import Costs
from cpmi_lib.eval.best_of_n import Candidate, Pool, best_of_n_curves, compare
from cpmi_lib.report.claims import GENERATED_TOKENS, LABELING_TIME
from cpmi_lib.report.tables import (
    QUALITY_SCORES,
    label_cost_table,
    label_cost_vs_paper,
    label_quality_table,
    mcnemar_table,
    processbench_table,
    save_table,
)


def _pb_result(f1s: dict[str, float], headline: float, oracle: float) -> dict:
    return {
        "threshold_from_dev": 0.4,
        "test": {
            "subsets": {
                s: {"f1": f, "acc_error": f / 2, "acc_correct": f, "f1_ci": [f - 0.1, f + 0.1]}
                for s, f in f1s.items()
            },
            "headline_f1": headline,
            "headline_ci": [headline - 0.05, headline + 0.05],
        },
        "test_oracle": {"headline_f1": oracle, "threshold": 0.55},
    }


def test_processbench_table_has_subsets_headline_and_labelled_oracle():
    results = {
        "cpmi": _pb_result({"short": 0.2, "long": 0.4}, 0.3, 0.35),
        "mc": _pb_result({"short": 0.1, "long": 0.5}, 0.3, 0.32),
    }
    table = processbench_table(results)
    assert len(table) == 2 * (2 + 2)
    cpmi = table[table["PRM"] == "cpmi"].set_index("subset")
    assert cpmi.loc["long", "F1"] == 0.4 and cpmi.loc["long", "F1 CI high"] == pytest.approx(0.5)
    assert cpmi.loc["mean (headline)", "F1 CI low"] == pytest.approx(0.25)
    oracle = cpmi.loc["mean, oracle tau (upper bound)"]
    assert oracle["F1"] == 0.35 and oracle["tau (dev)"] == 0.55
    assert math.isnan(oracle["F1 CI low"])  # no CI is claimed for the upper bound
    assert (cpmi.loc[["short", "long"], "tau (dev)"] == 0.4).all()


def test_label_quality_table_keeps_missing_aurocs_missing():
    quality = {
        "reference": "MC hard label (value > 0)",
        "cpmi_vs_mc": {"spearman_rho": 0.2, "kendall_tau": 0.15},
        "auroc_cpmi": {"auroc": 0.6, "ci": [0.5, 0.7]},
        "auroc_gold_term": {"auroc": 0.4, "ci": [0.3, 0.5]},
        "auroc_neg_term": {"auroc": 0.7, "ci": [0.6, 0.8]},
        "auroc_mc": {"auroc": None, "ci": None, "why": "MC is the reference"},
        "auroc_position": {"auroc": None, "ci": None, "why": "needs the exact step truth"},
    }
    table = label_quality_table(quality).set_index("score")
    assert list(table.index[:5]) == list(QUALITY_SCORES.values())
    assert pd.isna(table.loc["position only (cross-fitted)", "AUROC"])
    assert table.loc["CPMI", "CI high"] == 0.7
    assert pd.isna(table.loc["MC value", "AUROC"]) and pd.isna(table.loc["MC value", "CI low"])
    assert set(table["against"].dropna()) == {"MC hard label (value > 0)"}
    assert table.loc["Kendall τ (CPMI, MC)", "AUROC"] == 0.15


def test_mcnemar_table_pairs_every_prm_at_every_n(tmp_path):
    pools = [
        Pool(f"p{i}", [Candidate(str(j), j == i % 3, [0.1 * (j + 1)]) for j in range(4)])
        for i in range(12)
    ]
    flipped = [
        Pool(
            p.problem_id,
            [Candidate(c.final_answer, c.correct, [1 - c.step_probs[0]]) for c in p.candidates],
        )
        for p in pools
    ]
    curves = {
        name: best_of_n_curves(p, (1, 4), n_resamples=20)
        for name, p in (("a", pools), ("b", flipped), ("c", pools))
    }
    table = mcnemar_table(curves, (1, 4))
    assert list(table["pair"].unique()) == ["a vs b", "a vs c", "b vs c"]
    assert len(table) == 6
    row = table[(table["pair"] == "a vs b") & (table["n"] == 4)].iloc[0]
    expected = compare(curves["a"], "prm:min", curves["b"], "prm:min", 4)
    assert row["p (exact McNemar)"] == expected.p_value
    assert row[["both right", "only a right", "only b right", "both wrong"]].sum() == 12
    same = table[table["pair"] == "a vs c"]
    assert (same["only a right"] == 0).all() and (same["only b right"] == 0).all()
    md = save_table(table, "mcnemar", tmp_path)
    assert md.read_text().startswith("| pair") and (tmp_path / "tables" / "mcnemar.csv").exists()


def test_saved_tables_write_no_nan_and_refuse_infinity(tmp_path):
    df = pd.DataFrame({"score": ["a", "b"], "AUROC": [0.75, float("nan")], "note": ["x", None]})
    md = save_table(df, "t", tmp_path).read_text()
    assert "nan" not in md.lower() and md.count("—") == 2 and "0.75" in md
    csv = (tmp_path / "tables" / "t.csv").read_text()
    assert "nan" not in csv.lower() and csv.splitlines()[2] == "b,,"
    with pytest.raises(ValueError, match="infinite"):
        save_table(pd.DataFrame({"x": [1.0, float("inf")]}), "bad", tmp_path)


def test_label_cost_tables_set_the_measured_saving_next_to_the_declared_paper_number():
    """A hand case: CPMI takes 1 s and no generated tokens per step where MC takes 8 s and 50
    tokens; the paper's numbers come from the claims."""
    costs = {
        "cpmi": Costs(
            wall_seconds=10.0, forward_tokens=300, flops=2.0, peak_rss_bytes=2**21, steps=10
        ),
        "mc": Costs(
            wall_seconds=80.0,
            forward_tokens=600,
            generated_tokens=500,
            flops=0.0,
            peak_rss_bytes=2**22,
            steps=10,
        ),
    }
    table = label_cost_table(costs).set_index("per labeled step")
    assert table.loc["seconds", "CPMI"] == 1.0 and table.loc["seconds", "MC"] == 8.0
    assert table.loc["seconds", "CPMI saving"] == pytest.approx(7 / 8)
    assert table.loc["generated tokens", "CPMI saving"] == 1.0
    assert table.loc["forward tokens", "CPMI saving"] == pytest.approx(0.5)
    assert math.isnan(table.loc["FLOPs", "CPMI saving"])  # MC's FLOPs 0: no ratio
    assert table.loc["peak RSS (MiB, whole run)", "MC"] == 4.0
    vs = label_cost_vs_paper(table.reset_index())
    assert vs.to_dict("records") == [
        {"claim": "labeling time", "paper": LABELING_TIME.paper, "measured": pytest.approx(-7 / 8)},
        {"claim": "generated tokens", "paper": GENERATED_TOKENS.paper, "measured": -1.0},
    ]
