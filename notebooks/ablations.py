# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Ablations of CPMI
# Step-level AUROC against the reference labels (the exact truth on the embedded track, MC's hard
# labels on the hub track), on the same policy training steps, as one setting
# changes at a time from the base (marginal, mean, K = 4 templates, M = 4 trajectory and
# perturbation negatives): the number of negatives M, the number of templates K, the variant,
# mean vs sum, and where negatives come from.

# %% tags=["parameters"]
preset = "default"
results_dir = "../results"
figures_dir = "../figures"
n_trajectories = 300
negatives_grid = [0, 1, 2, 4, 8]
templates_grid = [1, 2, 4]

# %%
from dataclasses import replace

import pandas as pd

from cpmi_lib.experiment.presets import experiment_config
from cpmi_lib.experiment.stages import Experiment
from cpmi_lib.labeling.cpmi import VARIANTS
from cpmi_lib.report.plots import ablation_panels, save_figure
from cpmi_lib.report.tables import save_table

exp = Experiment(experiment_config(preset))
base = exp.cfg.cpmi
m_base = exp.cfg.n_negatives
settings = (
    [("negatives M", str(m), base, m, ("trajectory", "perturb")) for m in negatives_grid]
    + [
        (
            "templates K",
            str(len(exp.prompt_templates[:k])),  # as many as the track has
            replace(base, templates=exp.prompt_templates[:k]),
            m_base,
            ("trajectory", "perturb"),
        )
        for k in templates_grid
    ]
    + [
        ("variant", v, replace(base, variant=v), m_base, ("trajectory", "perturb"))
        for v in VARIANTS
    ]
    + [
        ("length norm", n, replace(base, length_norm=n), m_base, ("trajectory", "perturb"))
        for n in ("mean", "sum")
    ]
    + [
        ("negative source", "+".join(src), base, m_base, src)
        for src in (("trajectory",), ("perturb",), ("lm",), ("trajectory", "perturb"))
    ]
)
rows = []
for factor, value, cfg, m, sources in settings:
    r = exp.cpmi_ablation(cfg, m, sources, n_trajectories)
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
table = pd.DataFrame(rows).astype({"AUROC": float, "CI low": float, "CI high": float})
save_table(table, "ablations", results_dir)
table

# %%
save_figure(ablation_panels(table), "ablations", figures_dir)
