"""Ablations of CPMI: step AUROC against the reference labels (`studies.label_quality`) on the same
policy training steps, as one setting changes at a time from the experiment's base: the number of
negatives M, the number of templates K, the variant, mean vs sum, and where negatives come from.
Every setting scores through `labeling.cpmi.cpmi_trajectory`, the pipeline label files use."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import pandas as pd

from cpmi_lib.core.costs import CostMeter
from cpmi_lib.core.intervals import Resampling
from cpmi_lib.core.roc import auroc, auroc_ci
from cpmi_lib.core.trajectory import read_trajectories
from cpmi_lib.experiment.stages import Experiment
from cpmi_lib.labeling.cpmi import VARIANTS, CPMIConfig, cpmi_trajectory
from cpmi_lib.labeling.label_file import trajectory_seed
from cpmi_lib.studies.label_quality import reference_labels

#: The base's negative sources (trajectory numbers, then perturbations of the gold).
BASE_SOURCES: tuple[str, ...] = ("trajectory", "perturb")

#: One ablation setting: (factor, shown value, CPMI settings, M, negative sources).
Setting = tuple[str, str, CPMIConfig, int, tuple[str, ...]]


def cpmi_ablation(
    exp: Experiment,
    cpmi: CPMIConfig,
    n_negatives: int,
    sources: tuple[str, ...] = BASE_SOURCES,
    n_trajectories: int = 300,
) -> dict[str, Any]:
    """Step-level AUROC against the reference labels of CPMI with other settings, on the
    first `n_trajectories` training samples (the same ones for every setting)."""
    model, tok = exp.labeler_lm()
    cpmi = exp.cpmi_config(cpmi)
    trajs = read_trajectories(exp.policy_samples("train"))[:n_trajectories]
    reference = reference_labels(exp, trajs, "train")
    scores: list[float] = []
    truth: list[int] = []
    meter = CostMeter()
    with meter:
        for t in trajs:
            seed = trajectory_seed(exp.cfg.seed, t.id)
            _, steps = cpmi_trajectory(
                model, tok, t, cpmi, n_negatives, sources=sources, seed=seed, meter=meter
            )
            scores += [s.cpmi for s in steps]
            truth += reference[t.id]
    out: dict[str, Any] = {"n_steps": len(scores), "seconds": meter.costs.wall_seconds}
    if len(set(truth)) < 2:
        return {**out, "auroc": None, "ci": None}
    lo, hi = auroc_ci(scores, truth, Resampling(seed=exp.cfg.seed))
    return {**out, "auroc": auroc(scores, truth), "ci": [lo, hi]}


def ablation_settings(
    exp: Experiment, negatives_grid: Sequence[int], templates_grid: Sequence[int]
) -> list[Setting]:
    """The settings of the grid, one factor changed at a time from the experiment's base."""
    base, m_base = exp.cfg.cpmi, exp.cfg.n_negatives
    return (
        [("negatives M", str(m), base, m, BASE_SOURCES) for m in negatives_grid]
        + [
            (
                "templates K",
                str(len(exp.prompt_templates[:k])),  # as many as the track has
                replace(base, templates=exp.prompt_templates[:k]),
                m_base,
                BASE_SOURCES,
            )
            for k in templates_grid
        ]
        + [("variant", v, replace(base, variant=v), m_base, BASE_SOURCES) for v in VARIANTS]
        + [
            ("length norm", n, replace(base, length_norm=n), m_base, BASE_SOURCES)
            for n in ("mean", "sum")
        ]
        + [
            ("negative source", "+".join(src), base, m_base, src)
            for src in (("trajectory",), ("perturb",), ("lm",), BASE_SOURCES)
        ]
    )


def ablation_table(
    exp: Experiment,
    negatives_grid: Sequence[int],
    templates_grid: Sequence[int],
    n_trajectories: int = 300,
) -> pd.DataFrame:
    """One row per setting of `ablation_settings`: AUROC with its CI, steps and seconds."""
    rows = []
    for factor, value, cfg, m, sources in ablation_settings(exp, negatives_grid, templates_grid):
        r = cpmi_ablation(exp, cfg, m, sources, n_trajectories)
        ci = r["ci"] or [None, None]
        rows.append(
            {
                "factor": factor,
                "setting": value,
                "AUROC": r["auroc"],
                "CI low": ci[0],
                "CI high": ci[1],
                "steps": r["n_steps"],
                "seconds": r["seconds"],
            }
        )
    return pd.DataFrame(rows).astype({"AUROC": float, "CI low": float, "CI high": float})
