"""Label quality: CPMI vs MC on the same training steps, and each against the reference labels.

The reference is the exact step truth on the embedded track; on the hub, Math-Shepherd's own
'+'/'-' when the PRMs train on it, else MC's hard estimate (then MC itself is not scored). The
position-only labeler's out-of-fold scores (embedded track) give the floor: the AUROC a source
gets for knowing only where a step is. Two controls stand beside them: ``outcome`` labels (every
step gets its trajectory's final-answer correctness, free once answers are graded) and
``cpmi_noself`` (CPMI whose negatives never include the trajectory's own final answer): a source
that does no better than the first carries only the outcome, and the second shows how much of
CPMI's signal comes from contrasting with the trajectory's own answer.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from cpmi_lib.core.intervals import Resampling
from cpmi_lib.core.roc import auroc, auroc_ci, roc_curve_points
from cpmi_lib.core.stats import rank_correlations
from cpmi_lib.core.trajectory import Trajectory, read_trajectories
from cpmi_lib.experiment.stages import Experiment
from cpmi_lib.labeling.label_results import read_labels
from cpmi_lib.labeling.outcome import final_correct
from cpmi_lib.labeling.position import cross_fit_scores

#: The step scores `label_quality` scores against the reference, in table order.
QUALITY_COLUMNS = ("cpmi", "gold_term", "neg_term", "mc", "position", "outcome", "cpmi_noself")


def reference_name(exp: Experiment) -> str:
    """What label quality and the ablations are measured against."""
    if exp.track.step_truth:
        return "exact step truth"
    return "Math-Shepherd label (+)" if exp.shepherd else "MC hard label (value > 0)"


def reference_labels(exp: Experiment, trajs: list[Trajectory], split: str) -> dict[str, list[int]]:
    """Per-step 0/1 reference labels by trajectory id: the exact truth on the embedded track;
    on the hub, Math-Shepherd's own '+'/'-' when the PRMs train on it, else MC's hard
    estimate (right when any rollout reaches the gold, as Math-Shepherd labels)."""
    if exp.track.step_truth or exp.shepherd:  # exact, or Math-Shepherd's '+'/'-'
        out = {}
        for t in trajs:
            if t.step_labels is None:
                raise ValueError(f"trajectory {t.id!r}: field 'step_labels' is missing")
            out[t.id] = [int(x) for x in t.step_labels]
        return out
    mc = {r["id"]: r for r in read_labels(exp.labels("mc", split))}
    return {t.id: [int(s["value"] > 0) for s in mc[t.id]["steps"]] for t in trajs}


def step_scores(exp: Experiment, split: str = "train") -> pd.DataFrame:
    """One row per policy step: CPMI and its terms, MC value, the controls (outcome label,
    CPMI without the own answer among its negatives), whether the trajectory's final answer is
    right, the exact truth where known (else None) and the reference label (`reference_name`)."""
    trajs = read_trajectories(exp.policy_samples(split))
    cpmi = {r["id"]: r for r in read_labels(exp.labels("cpmi", split))}
    mc = {r["id"]: r for r in read_labels(exp.labels("mc", split))}
    outcome = {r["id"]: r for r in read_labels(exp.labels("outcome", split))}
    noself = {r["id"]: r for r in read_labels(exp.labels("cpmi_noself", split))}
    reference = reference_labels(exp, trajs, split)
    rows = []
    for t in trajs:
        for i in range(t.n_steps):
            step = cpmi[t.id]["steps"][i]
            rows.append(
                {
                    "trajectory": t.id,
                    "step": i,
                    "cpmi": step["cpmi"],
                    "gold_term": step["gold_term"],
                    "neg_term": -step["neg_term"],  # sign flipped: pushing negatives down is good
                    "mc": mc[t.id]["steps"][i]["value"],
                    "outcome": outcome[t.id]["steps"][i]["value"],
                    "cpmi_noself": noself[t.id]["steps"][i]["cpmi"],
                    "final_correct": final_correct(t),
                    "truth": int(t.step_labels[i]) if exp.track.step_truth else None,
                    "reference": reference[t.id][i],
                }
            )
    return pd.DataFrame(rows)


def label_quality(exp: Experiment) -> dict[str, Any]:
    """CPMI vs MC on the same training steps, and each against the reference labels (MC
    is not scored against itself on the hub track), next to the position-only labeler's
    out-of-fold scores (embedded track) and the controls (`QUALITY_COLUMNS`)."""
    df = step_scores(exp, "train")
    truth = df["reference"].tolist()
    out: dict[str, Any] = {
        "n_steps": len(df),
        "reference": reference_name(exp),
        "share_correct": float(np.mean(truth)),
    }
    out["cpmi_vs_mc"] = rank_correlations(df["cpmi"], df["mc"])
    if exp.track.step_truth:  # the floor: out-of-fold position-only scores
        trajs = read_trajectories(exp.policy_samples("train"))
        df["position"] = [x for row in cross_fit_scores(trajs, seed=exp.cfg.seed) for x in row]
    mc_is_reference = not exp.track.step_truth and not exp.shepherd
    out["cpmi_vs_outcome"] = rank_correlations(df["cpmi"], df["outcome"])
    for name in QUALITY_COLUMNS:
        no_truth = name == "position" and not exp.track.step_truth
        if (name == "mc" and mc_is_reference) or no_truth:
            why = "MC is the reference" if name == "mc" else "needs the exact step truth"
            out[f"auroc_{name}"] = {"auroc": None, "ci": None, "why": why}
            continue
        scores = df[name].tolist()
        if len(set(truth)) < 2:  # e.g. a policy that never gets a step right
            out[f"auroc_{name}"] = {"auroc": None, "ci": None, "why": "one class only"}
            continue
        lo, hi = auroc_ci(scores, truth, Resampling(seed=exp.cfg.seed))
        out[f"auroc_{name}"] = {"auroc": auroc(scores, truth), "ci": [lo, hi]}
    return out


def roc_data(steps: pd.DataFrame, quality: dict[str, Any]) -> dict[str, tuple[Any, Any, float]]:
    """ROC points and AUROC of CPMI, MC and the controls against the reference
    (`report.plots.roc_curves`' input), for the sources `label_quality` scored; empty when the
    reference has one class."""
    if steps["reference"].nunique() != 2:
        return {}
    curves = {}
    for key in ("cpmi", "mc", "outcome", "cpmi_noself"):
        if key not in steps or quality.get(f"auroc_{key}", {}).get("auroc") is None:
            continue
        fpr, tpr = roc_curve_points(steps[key], steps["reference"])
        curves[key] = (fpr, tpr, quality[f"auroc_{key}"]["auroc"])
    return curves
