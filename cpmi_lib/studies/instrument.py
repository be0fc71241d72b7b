"""The instrument's controls and comparisons on top of the PRM experiment (`prm_experiment`).

- The budget (`studies.budget.budget_plan`): the wall-clock time MC (N rollouts) took on the base
  training set, read from the cost meter of the same run; CPMI labels the base set, then extra
  samples, until its own measured seconds reach MC's. The comparison shows labeling seconds, and
  labeling plus the seconds spent sampling the extra trajectories.
- `budget_comparison`: PRMs from MC labels of the base set, CPMI labels of the base set and of the
  budget-matched set, and exact truth of both sizes, scored alike (ProcessBench-style F1 with τ
  from dev, Best-of-N with the aggregation chosen on dev) with exact McNemar tests.
- `learning_curve`: the truth PRM against the number of training trajectories.
- `label_quality_within_position`: each label source's (and each PRM's) step AUROC against the
  exact truth pooled, within step position (so no source gets credit for knowing only where a
  step is) and within the steps of wrong final answers (where the outcome is constant, so the
  ``outcome`` control scores 0.5 by construction and a source must locate the error). The
  controls ``outcome`` and ``cpmi_noself`` stand next to CPMI, MC and position.
- `headline_entries`: the numbers `results/headline.json` holds, read from those tables.

The PRMs, labels and evaluations behind these tables are the experiment's cached stages; the
tables themselves are cheap to rebuild from them and are not cached.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pandas as pd

from cpmi_lib.core.intervals import Resampling
from cpmi_lib.core.trajectory import Trajectory, read_trajectories
from cpmi_lib.eval.best_of_n import compare
from cpmi_lib.experiment.stages import BASE, BUDGET, Experiment, parse_prm_name
from cpmi_lib.labeling.label_results import read_labels, total_costs
from cpmi_lib.labeling.outcome import final_correct
from cpmi_lib.labeling.position import cross_fit_scores, position_auroc
from cpmi_lib.labeling.wrong_answers import UndefinedAUROC, wrong_answer_auroc
from cpmi_lib.report import claims
from cpmi_lib.report.headline import Headline, put_entry
from cpmi_lib.studies.budget import budget_plan, budget_size, extra_sampling_seconds

#: The PRMs of the equal-budget comparison, in table order.
BUDGET_PRMS = ("mc", "cpmi", f"cpmi@{BUDGET}", "truth", f"truth@{BUDGET}")
#: The label sources of the label-quality table (labels on the base training steps), in order:
#: (source, label field); position's are cross-fitted instead.
QUALITY_SOURCES = (
    ("cpmi", "cpmi"),
    ("mc", "value"),
    ("position", "value"),
    ("outcome", "value"),
    ("cpmi_noself", "cpmi"),
)


def cpmi_seconds(exp: Experiment, n: int) -> float:
    """Measured CPMI seconds of the first `n` training trajectories (base, then extra)."""
    records = read_labels(exp.labels("cpmi", "train"))
    if n > len(records):
        records += read_labels(exp.labels("cpmi", "extra"))
    return total_costs(records[:n]).wall_seconds


def prm_row(exp: Experiment, name: str) -> dict[str, Any]:
    """F1 (τ from dev) and Best-of-N at the largest N (aggregation chosen on dev) of one PRM."""
    pb = exp.processbench(name)["test"]
    n = max(exp.cfg.bon_ns)
    method = exp.bon_method(name)
    bon = exp.best_of_n(name).set_index(["method", "n"]).loc[(method, n)]
    return {
        "prm": name,
        "f1": pb["headline_f1"],
        "f1_ci": list(pb["headline_ci"]),
        "bon_method_from_dev": method,
        f"bon{n}": float(bon["accuracy"]),
        f"bon{n}_ci": [float(bon["ci_low"]), float(bon["ci_high"])],
        "bon_problems": int(bon["n_problems"]),
    }


def majority_bon(exp: Experiment) -> float:
    """Majority vote's Best-of-N accuracy at the largest N (the same for every PRM)."""
    n = max(exp.cfg.bon_ns)
    curves = exp.best_of_n(exp.prm_names[0]).set_index(["method", "n"])
    return float(curves.loc[("majority", n), "accuracy"])


def budget_prms(exp: Experiment) -> tuple[str, ...]:
    """`BUDGET_PRMS` this track can train (truth only where the step truth is known)."""
    return tuple(n for n in BUDGET_PRMS if exp.track.step_truth or not n.startswith("truth"))


def budget_comparison(exp: Experiment, names: Sequence[str] | None = None) -> pd.DataFrame:
    """One row per PRM of `names` (default: `budget_prms`): trajectories, labeling seconds,
    labeling plus the seconds spent sampling the extra trajectories its set uses (measured by
    the plan; the base set's samples are shared by every source), F1, Best-of-N."""
    plan = budget_plan(exp)
    rows = []
    for name in budget_prms(exp) if names is None else names:
        source, size = parse_prm_name(name)
        if size == BUDGET:
            n = budget_size(exp)
        else:
            n = plan["mc_trajectories"] if size == BASE else int(size)
        label = {"mc": plan["mc_seconds"], "cpmi": cpmi_seconds(exp, n)}.get(source, 0.0)
        rows.append(
            {
                "labels": source,
                "set": size,
                "trajectories": n,
                "label_seconds": label,
                "label_and_sampling_seconds": label + extra_sampling_seconds(plan, n),
            }
            | prm_row(exp, name)
        )
    return pd.DataFrame(rows)


def budget_tests(exp: Experiment) -> dict[str, Any]:
    """Exact McNemar at the largest N: CPMI at budget vs MC, and CPMI at budget vs CPMI base
    (each PRM with its own dev-chosen aggregation)."""
    n = max(exp.cfg.bon_ns)
    budget_plan(exp)  # sizes the cpmi@budget set
    out = {}
    for a, b in ((f"cpmi@{BUDGET}", "mc"), (f"cpmi@{BUDGET}", "cpmi"), ("cpmi", "mc")):
        res = compare(exp.best_of_n(a), exp.bon_method(a), exp.best_of_n(b), exp.bon_method(b), n)
        out[f"{a} vs {b}"] = res.to_dict()
    return out


def learning_curve(exp: Experiment) -> pd.DataFrame:
    """The truth PRM at each of `curve_sizes` (those below the budget set's size) and at the
    budget set: F1 and Best-of-N with CIs."""
    n_budget = budget_size(exp)
    n_base = budget_plan(exp)["mc_trajectories"]
    sizes = sorted({n for n in exp.cfg.curve_sizes if n < n_budget})
    # a size equal to the base set's is the base truth PRM itself: not trained twice
    names = ["truth" if n == n_base else f"truth@{n}" for n in sizes] + [f"truth@{BUDGET}"]
    rows = []
    for n, name in zip([*sizes, n_budget], names, strict=True):
        rows.append({"trajectories": n} | prm_row(exp, name))
    return pd.DataFrame(rows)


def label_quality_within_position(exp: Experiment, prm_split: str = "dev") -> pd.DataFrame:
    """Step AUROC against the exact truth, pooled, within step position (average over
    positions, trajectory-bootstrap CI) and within the steps of wrong final answers (step
    bootstrap CI): the label sources of `QUALITY_SOURCES` on the base training steps (the
    position labeler cross-fitted there), and each PRM's step scores on the held-out `prm_split`
    policy samples."""
    trajs = read_trajectories(exp.policy_samples("train"))
    rows = []
    for name, field in QUALITY_SOURCES:
        if name == "position":
            scores = cross_fit_scores(trajs, seed=exp.cfg.seed)
        else:
            scores = label_scores(exp, name, field, trajs)
        res = position_auroc(trajs, scores, seed=exp.cfg.seed)
        wrong = within_wrong_answers(trajs, scores, exp.cfg.seed)
        rows.append(_quality_row(f"{name} labels", "train", res) | wrong)
    held_out = read_trajectories(exp.policy_samples(prm_split))
    for name in exp.prm_names:
        scores = exp.predict(name, held_out)
        res = position_auroc(held_out, scores, seed=exp.cfg.seed)
        wrong = within_wrong_answers(held_out, scores, exp.cfg.seed)
        rows.append(_quality_row(f"{name} PRM", prm_split, res) | wrong)
    return pd.DataFrame(rows)


def within_wrong_answers(
    trajs: Sequence[Trajectory], scores: Sequence[Sequence[float]], seed: int
) -> dict[str, Any]:
    """Step AUROC against the exact truth among the steps of trajectories whose final answer is
    wrong (`wrong_answer_auroc`: a trajectory-bootstrap CI); None where it is undefined."""
    try:
        res = wrong_answer_auroc(trajs, scores, options=Resampling(seed=seed))
    except UndefinedAUROC:
        steps = sum(t.n_steps for t in trajs if not final_correct(t))
        return {
            "wrong_answer_steps": steps,
            "auroc_within_wrong_answers": None,
            "wrong_answers_ci": None,
        }
    return {
        "wrong_answer_steps": res.n_steps,
        "auroc_within_wrong_answers": res.value,
        "wrong_answers_ci": list(res.ci) if res.ci else None,
    }


def label_scores(
    exp: Experiment,
    labeler: str,
    field: str,
    trajs: Sequence[Trajectory],
    first: int | None = None,
) -> list[list[float]]:
    """Per trajectory of `trajs` (training samples, in order), the step `field` of `labeler`'s
    labels of the training split (`first`: of at least its first n samples, `Experiment.labels`)."""
    by_id = {r["id"]: r for r in read_labels(exp.labels(labeler, "train", first=first))}
    return [[float(s[field]) for s in by_id[t.id]["steps"]] for t in trajs]


def _quality_row(name: str, split: str, res: dict[str, Any]) -> dict[str, Any]:
    return {
        "scores": name,
        "split": split,
        "steps": res["n_steps"],
        "auroc_pooled": res["auroc_pooled"],
        "auroc_within_position": res["auroc_within_position"],
        "within_ci": res["ci"],
        "per_position": {p["stratum"]: p["auroc"] for p in res["per_position"]},
    }


def headline_entries(
    exp: Experiment, budget: pd.DataFrame, tests: dict[str, Any], quality: pd.DataFrame
) -> dict[str, Headline]:
    """The instrument's `results/headline.json` numbers (embedded track), from the tables of
    `budget_comparison`, `budget_tests` and `label_quality_within_position` (not recomputed); a
    number that is undefined in this run (e.g. an AUROC where one class is missing) is left out,
    not faked."""
    n = max(exp.cfg.bon_ns)
    out: dict[str, Headline] = {}
    rows = {r["prm"]: r for r in (prm_row(exp, name) for name in exp.prm_names)}
    for name, r in rows.items():
        if name not in claims.PRM_F1:  # a PRM without a headline number (yet)
            continue
        f1 = claims.PRM_F1[name]
        put_entry(out, f1, r["f1"], tuple(r["f1_ci"]), benchmark_items(exp, name))
    truth = rows["truth"]
    put_entry(
        out,
        claims.TRUTH_PRM_BON[n],
        truth[f"bon{n}"],
        tuple(truth[f"bon{n}_ci"]),
        truth["bon_problems"],
    )
    curves = exp.best_of_n("truth").set_index(["method", "n"])
    for method in ("majority", "random"):
        r = curves.loc[(method, n)]
        put_entry(
            out,
            claims.BASELINE_BON[method][n],
            float(r["accuracy"]),
            (float(r["ci_low"]), float(r["ci_high"])),
            int(r["n_problems"]),
        )
    vs = compare(
        exp.best_of_n("truth"), truth["bon_method_from_dev"], exp.best_of_n("truth"), "majority", n
    )
    put_entry(out, claims.TRUTH_PRM_VS_MAJORITY_P, vs.p_value, None, truth["bon_problems"])
    quality = quality.set_index("scores")
    for source in ("cpmi", "mc", "position"):
        q = quality.loc[f"{source} labels"]
        auroc = claims.AUROC_VS_TRUTH[source]
        put_entry(out, auroc, q["auroc_pooled"], None, int(q["steps"]))
    q = quality.loc["cpmi labels"]
    ci = tuple(q["within_ci"]) if q["within_ci"] is not None else None
    within = claims.CPMI_AUROC_WITHIN_POSITION
    put_entry(out, within, q["auroc_within_position"], ci, int(q["steps"]))
    plan = budget_plan(exp)
    mc_n = plan["mc_trajectories"]
    put_entry(out, claims.BUDGET_MC_SECONDS, plan["mc_seconds"], None, mc_n)
    put_entry(out, claims.BUDGET_MC_TRAJECTORIES, mc_n, None, mc_n)
    n_budget = budget_size(exp)
    put_entry(out, claims.BUDGET_CPMI_TRAJECTORIES, n_budget, None, n_budget)
    table = budget.set_index("prm")
    by_prm = {f"cpmi@{BUDGET}": claims.BUDGET_CPMI_PRM_F1, "mc": claims.BUDGET_MC_PRM_F1}
    for name, claim in by_prm.items():
        r = table.loc[name]
        put_entry(out, claim, r["f1"], tuple(r["f1_ci"]), benchmark_items(exp, name))
    test = tests[f"cpmi@{BUDGET} vs mc"]
    put_entry(out, claims.BUDGET_CPMI_VS_MC_P, test["p_value"], None, truth["bon_problems"])
    return out


def benchmark_items(exp: Experiment, name: str) -> int:
    """Benchmark items the F1 is computed on."""
    subsets = exp.processbench(name)["test"]["subsets"]
    return int(sum(s["n_error"] + s["n_correct"] for s in subsets.values()))
