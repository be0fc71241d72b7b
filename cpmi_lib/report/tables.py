"""Tables of the suite: results turned into tables, each written as CSV (for machines) and
Markdown (for people)."""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cpmi_lib.core.costs import Costs
from cpmi_lib.eval.best_of_n import compare
from cpmi_lib.report.claims import GENERATED_TOKENS, LABELING_TIME


def save_table(df: pd.DataFrame, name: str, results_dir: str | os.PathLike[str]) -> Path:
    """Write `df` to ``results_dir/tables/name.csv`` and ``.md``; return the Markdown path.

    A missing or undefined cell (None, NaN) is written empty in the CSV and as "—" in Markdown,
    never as "nan"; an infinite value is an error."""
    numeric = df.select_dtypes("number")
    if numeric.size and np.isinf(numeric.to_numpy(dtype=float)).any():
        raise ValueError(f"table {name!r} holds an infinite value")
    out = Path(results_dir) / "tables"
    out.mkdir(parents=True, exist_ok=True)
    df.to_csv(out / f"{name}.csv", index=False)
    md = out / f"{name}.md"
    shown = df.astype(object).where(df.notna(), None)
    md.write_text(shown.to_markdown(index=False, floatfmt=".4g", missingval="—") + "\n")
    return md


def processbench_table(results: Mapping[str, Mapping[str, Any]]) -> pd.DataFrame:
    """One row per PRM and subset, then the headline mean and the oracle-τ upper bound, from
    `Experiment.processbench` results keyed by PRM name."""
    rows = []
    for name, r in results.items():
        test, tau = r["test"], r["threshold_from_dev"]
        for subset, m in test["subsets"].items():
            rows.append(
                {
                    "PRM": name,
                    "subset": subset,
                    "F1": m["f1"],
                    "acc_error": m["acc_error"],
                    "acc_correct": m["acc_correct"],
                    "F1 CI low": m["f1_ci"][0],
                    "F1 CI high": m["f1_ci"][1],
                    "tau (dev)": tau,
                }
            )
        low, high = test["headline_ci"]
        rows.append(
            {
                "PRM": name,
                "subset": "mean (headline)",
                "F1": test["headline_f1"],
                "F1 CI low": low,
                "F1 CI high": high,
                "tau (dev)": tau,
            }
        )
        rows.append(
            {
                "PRM": name,
                "subset": "mean, oracle tau (upper bound)",
                "F1": r["test_oracle"]["headline_f1"],
                "tau (dev)": r["test_oracle"]["threshold"],
            }
        )
    return pd.DataFrame(rows)


#: The ``label_cost`` table's rows: a `Costs.per_step` field and its label.
COST_ROWS = (
    ("wall_seconds", "seconds"),
    ("generated_tokens", "generated tokens"),
    ("forward_tokens", "forward tokens"),
    ("flops", "FLOPs"),
)


def label_cost_table(costs: Mapping[str, Costs]) -> pd.DataFrame:
    """CPMI's and MC's labeling cost per labeled step (`COST_ROWS`) and CPMI's saving, then both
    runs' peak RSS, from the total `Costs` of each method's labels (keys ``cpmi`` and ``mc``)."""
    per_step = {m: costs[m].per_step() for m in ("cpmi", "mc")}
    rows = []
    for key, label in COST_ROWS:
        c, m = per_step["cpmi"][key], per_step["mc"][key]
        saving = 1 - c / m if m else float("nan")
        rows.append({"per labeled step": label, "CPMI": c, "MC": m, "CPMI saving": saving})
    rss = {m: costs[m].peak_rss_bytes / 2**20 for m in ("cpmi", "mc")}
    rows.append(
        {
            "per labeled step": "peak RSS (MiB, whole run)",
            "CPMI": rss["cpmi"],
            "MC": rss["mc"],
            "CPMI saving": float("nan"),
        }
    )
    return pd.DataFrame(rows)


#: The paper's cost claims, each with the row of the ``label_cost`` table that measures it.
COST_CLAIMS = ((LABELING_TIME, "seconds"), (GENERATED_TOKENS, "generated tokens"))


def label_cost_vs_paper(cost: pd.DataFrame) -> pd.DataFrame:
    """The paper's cost claims (`cpmi_lib.report.claims`) next to the measured change, from the
    ``label_cost`` table (column ``per labeled step``, CPMI's saving over MC)."""
    saving = cost.set_index("per labeled step")["CPMI saving"]
    rows = [
        {"claim": claim.table_row, "paper": claim.paper, "measured": -saving[row]}
        for claim, row in COST_CLAIMS
    ]
    return pd.DataFrame(rows)


#: The scores `studies.label_quality.label_quality` rates, with their table labels.
QUALITY_SCORES = {
    "cpmi": "CPMI",
    "gold_term": "CPMI gold term",
    "neg_term": "CPMI −negative term",
    "mc": "MC value",
    "position": "position only (cross-fitted)",
}


def label_quality_table(quality: Mapping[str, Any]) -> pd.DataFrame:
    """AUROC with CI of each score against the reference labels, then the CPMI–MC rank
    correlations (in the AUROC column), from `studies.label_quality.label_quality`."""
    rows = []
    for key, label in QUALITY_SCORES.items():
        a = quality[f"auroc_{key}"]
        low, high = a["ci"] or (None, None)
        rows.append(
            {
                "score": label,
                "AUROC": a["auroc"],
                "CI low": low,
                "CI high": high,
                "against": quality["reference"],
            }
        )
    corr = quality["cpmi_vs_mc"]
    rows.append({"score": "Spearman ρ (CPMI, MC)", "AUROC": corr["spearman_rho"]})
    rows.append({"score": "Kendall τ (CPMI, MC)", "AUROC": corr["kendall_tau"]})
    return pd.DataFrame(rows)


def mcnemar_table(
    curves: Mapping[str, pd.DataFrame], ns: Iterable[int], method: str = "prm:min"
) -> pd.DataFrame:
    """Exact McNemar tests between every pair of PRMs at each N, from Best-of-N curves scored on
    one shared pool (so the outcomes are paired)."""
    rows = []
    for a, b in itertools.combinations(curves, 2):
        for n in ns:
            t = compare(curves[a], method, curves[b], method, n)
            rows.append(
                {
                    "pair": f"{a} vs {b}",
                    "n": n,
                    "both right": t.table[0][0],
                    "only a right": t.table[0][1],
                    "only b right": t.table[1][0],
                    "both wrong": t.table[1][1],
                    "p (exact McNemar)": t.p_value,
                }
            )
    return pd.DataFrame(rows)
