"""The equal budget: MC's measured labeling seconds on the base set, and how many trajectories CPMI
labels in that time. The plan is decided once, from the first run's cost meters, and kept in the
experiment's labels folder (`Experiment.budget_file`), where the extra samples and the
budget-matched training set read it."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from cpmi_lib.core.trajectory import read_trajectories
from cpmi_lib.experiment.stages import BUDGET, Experiment
from cpmi_lib.labeling.label_results import read_labels, total_costs


def budget_plan(exp: Experiment) -> dict[str, Any]:
    """The equal-budget plan: the wall-clock seconds MC took on the base training set (its
    own cost meter) and how many trajectories CPMI labels in that time at the rate it
    labeled the base set, rounded down to whole problems and capped by the world's train
    split. Cached: decided once from the first run's measured seconds, so reruns reuse the
    same data."""
    out = exp.budget_file
    if out.exists():
        return json.loads(out.read_text())
    mc = total_costs(read_labels(exp.labels("mc", "train")))
    cpmi = total_costs(read_labels(exp.labels("cpmi", "train")))
    n_base = len(read_trajectories(exp.policy_samples("train")))
    per_trajectory = cpmi.wall_seconds / n_base
    spp = exp.cfg.samples_per_problem
    available = len(exp.track.problems("train", 10**9)) * spp  # the whole train split
    wanted = int(mc.wall_seconds / per_trajectory) // spp * spp
    n_cpmi = max(n_base, min(wanted, available))
    plan = {
        "mc_seconds": mc.wall_seconds,
        "mc_trajectories": n_base,
        "mc_rollouts": exp.cfg.mc.n_rollouts,
        "cpmi_seconds_base": cpmi.wall_seconds,
        "cpmi_seconds_per_trajectory": per_trajectory,
        "cpmi_trajectories": n_cpmi,
        "capped_by_world": wanted > available,
        "extra_problems": max(0, math.ceil((n_cpmi - n_base) / spp)),
    }
    out.write_text(json.dumps(plan, indent=2) + "\n")
    return plan


def budget_size(exp: Experiment) -> int:
    """Trajectories in the budget-matched set: the plan's count, or a few fewer where
    samples without steps were dropped."""
    budget_plan(exp)
    return len(exp.training_trajectories(BUDGET))


def save_budget_plan(exp: Experiment, results_dir: str | Path) -> dict[str, Any]:
    """The plan, also written to ``<results_dir>/budget_plan.json`` for the results folder."""
    plan = budget_plan(exp)
    Path(results_dir).mkdir(parents=True, exist_ok=True)
    (Path(results_dir) / "budget_plan.json").write_text(json.dumps(plan, indent=2) + "\n")
    return plan
