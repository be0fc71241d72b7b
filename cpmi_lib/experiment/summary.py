"""The PRM experiment's summary: everything `results/prm_experiment.{json,md}` and the README
report, with CIs and paired tests, computed from the experiment's cached stages."""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from cpmi_lib.core.paths import RESULTS
from cpmi_lib.eval.best_of_n import compare
from cpmi_lib.experiment.stages import Experiment, ExperimentConfig
from cpmi_lib.labeling.label_results import read_labels, total_costs

#: The label-quality analysis the summary reports: a function of the experiment.
LabelQuality = Callable[[Experiment], dict[str, Any]]


def summary(
    exp: Experiment, label_quality: LabelQuality, mcnemar_method: str = "prm:min"
) -> dict[str, Any]:
    """Everything the README reports, with CIs and paired tests. `label_quality` is the analysis
    (`cpmi_lib.studies.label_quality.label_quality`), passed in: studies sit above this package."""
    curves = {name: exp.best_of_n(name) for name in exp.prm_names}
    bon = {}
    for name, df in curves.items():
        bon[name] = [
            {
                "method": r.method,
                "n": int(r.n),
                "accuracy": r.accuracy,
                "ci": [r.ci_low, r.ci_high],
            }
            for r in df.itertuples(index=False)
        ]
    tests = {}
    for a, b in itertools.combinations(exp.prm_names, 2):
        tests[f"{a}_vs_{b}"] = {
            n: compare(curves[a], mcnemar_method, curves[b], mcnemar_method, n).to_dict()
            for n in exp.cfg.bon_ns
        }
    costs = {
        lab: total_costs(read_labels(exp.labels(lab, "train"))).to_dict() for lab in ("cpmi", "mc")
    }
    parsed = exp.parse_reports()  # sample files written before parse reports existed have none
    return {
        **({"samples_parsed": parsed} if parsed else {}),
        "config_key": exp.cfg.key(),
        "config": exp.cfg.to_dict(),
        "track": exp.track.describe(),
        "processbench": {name: exp.processbench(name) for name in exp.prm_names},
        "best_of_n": bon,
        "mcnemar_method": mcnemar_method,
        "mcnemar": tests,
        "label_quality": label_quality(exp),
        "labeling_costs_train": costs,
    }


def summary_markdown(record: dict[str, Any], ns: tuple[int, ...] = (4, 16)) -> str:
    """The tables the README shows, from a summary (so the README's numbers are this run's)."""

    def ci(x: float, lo: float, hi: float) -> str:
        return f"{x:.3f} [{lo:.3f}, {hi:.3f}]"

    pb = record["processbench"]
    subsets = list(next(iter(pb.values()))["test"]["subsets"])
    lines = [
        "| PRM trained on | F1 (95% CI), τ from dev | "
        + " | ".join(f"{s} F1" for s in subsets)
        + " | τ | oracle-τ F1 (upper bound) |",
        "| --- | --- | " + " | ".join("---:" for _ in subsets) + " | ---: | ---: |",
    ]
    for name, r in pb.items():
        t = r["test"]
        cells = [f"{t['subsets'][s]['f1']:.3f}" for s in subsets]
        lines.append(
            f"| {name} labels | {ci(t['headline_f1'], *t['headline_ci'])} | "
            + " | ".join(cells)
            + f" | {r['threshold_from_dev']:.2f} | {r['test_oracle']['headline_f1']:.3f} |"
        )
    methods = ("prm:min", "prm:last", "prm-vote:min", "majority", "random", "pass@n")
    lines += [
        "",
        "| Best-of-N accuracy (95% CI) | " + " | ".join(f"N = {n}" for n in ns) + " |",
        "| --- | " + " | ".join("---" for _ in ns) + " |",
    ]
    for name, rows in record["best_of_n"].items():
        by = {(r["method"], r["n"]): r for r in rows}
        for m in methods:
            if m in ("majority", "random", "pass@n") and name != "cpmi":
                continue  # the same for every PRM (one shared pool)
            label = f"{name} PRM, {m}" if m.startswith("prm") else m
            cells = [ci(by[(m, n)]["accuracy"], *by[(m, n)]["ci"]) for n in ns]
            lines.append(f"| {label} | " + " | ".join(cells) + " |")
    lines += [
        "",
        f"| exact McNemar, {record['mcnemar_method']} | "
        + " | ".join(f"N = {n}: table, p" for n in ns)
        + " |",
        "| --- | " + " | ".join("---" for _ in ns) + " |",
    ]
    for pair, by_n in record["mcnemar"].items():
        cells = [f"{by_n[str(n)]['table']}, p = {by_n[str(n)]['p_value']:.3f}" for n in ns]
        lines.append(f"| {pair.replace('_', ' ')} | " + " | ".join(cells) + " |")
    q = record["label_quality"]
    corr = q["cpmi_vs_mc"]
    agreement = (
        f"Spearman ρ(CPMI, MC) = {corr['spearman_rho']:.3f}, Kendall τ = {corr['kendall_tau']:.3f}"
        if corr["spearman_rho"] is not None
        else f"CPMI vs MC: {corr['why']}"
    )
    lines += [
        "",
        f"Label quality on the {q['n_steps']:,} training steps "
        f"({q['share_correct']:.1%} right by the {q['reference']}): {agreement}.",
        "",
        f"| step-level AUROC vs {q['reference']} | AUROC (95% CI) |",
        "| --- | --- |",
    ]
    for key, label in [
        ("auroc_cpmi", "CPMI"),
        ("auroc_gold_term", "CPMI gold term only"),
        ("auroc_neg_term", "CPMI negative term only (sign flipped)"),
        ("auroc_mc", "MC value"),
        ("auroc_position", "position only (cross-fitted; the floor)"),
        ("auroc_outcome", "outcome: the final answer's correctness on every step (free)"),
        ("auroc_cpmi_noself", "CPMI, negatives never the own answer (control)"),
    ]:
        if key not in q:  # a summary of a run before the controls existed
            continue
        a = q[key]
        value = ci(a["auroc"], *a["ci"]) if a["auroc"] is not None else a.get("why", "undefined")
        lines.append(f"| {label} | {value} |")
    return "\n".join(lines) + "\n"


def run_experiment(
    cfg: ExperimentConfig | None = None,
    out: Path | None = None,
    *,
    label_quality: LabelQuality,
) -> dict[str, Any]:
    """All stages; writes the summary JSON (default `results/prm_experiment.json`) and its
    Markdown tables beside it (`label_quality`: as for `summary`)."""
    torch.set_num_threads(2)
    exp = Experiment(cfg or ExperimentConfig())
    for name in exp.prm_names:
        exp.train(name)
    result = summary(exp, label_quality)
    out = out or RESULTS / "prm_experiment.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2, default=float, allow_nan=False) + "\n")
    result = json.loads(out.read_text())  # JSON keys (N as strings), as readers will see them
    out.with_suffix(".md").write_text(summary_markdown(result, cfg_ns(cfg)))
    return result


def cfg_ns(cfg: ExperimentConfig | None) -> tuple[int, ...]:
    """The two largest N of the Best-of-N curves, for the tables."""
    ns = (cfg or ExperimentConfig()).bon_ns
    return tuple(sorted(ns)[-2:])
