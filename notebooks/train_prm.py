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
# # PRMs from CPMI, MC and exact labels
# One PRM per label source on the same backbone and the same policy trajectories; only the labels
# differ. Targets: CPMI `zsig`, MC soft values, and (embedded track only) the exact truth.
# Dev-loss early stopping.

# %% tags=["parameters"]
preset = "default"
results_dir = "../results"
figures_dir = "../figures"

# %%
import json

import pandas as pd

from cpmi_lib.experiment.presets import experiment_config
from cpmi_lib.experiment.stages import Experiment
from cpmi_lib.report.plots import learning_curves, save_figure
from cpmi_lib.report.tables import save_table

exp = Experiment(experiment_config(preset))
records = {name: json.loads((exp.train(name) / "prm.json").read_text()) for name in exp.prm_names}

# %%
curves = {name: pd.DataFrame(rec["learning_curve"]) for name, rec in records.items()}
save_figure(learning_curves(curves), "train_prm_learning_curves", figures_dir)
table = pd.DataFrame(
    [
        {
            "PRM": name,
            "target": rec["config"]["target"],
            "epochs": curves[name]["epoch"].max(),
            "best dev loss": curves[name]["eval_loss"].min(),
            "seconds": rec.get("train_seconds"),
        }
        for name, rec in records.items()
    ]
)
save_table(table, "train_prm", results_dir)
table
