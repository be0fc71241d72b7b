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
# Three PRMs on the same backbone (the default LM) and the same policy trajectories; only the
# labels differ. Targets: CPMI `zsig`, MC soft values, exact truth. Dev-loss early stopping.

# %% tags=["parameters"]
preset = "default"
results_dir = "../results"
figures_dir = "../figures"

# %%
import json

import pandas as pd

from cpmi_lib.plots import learning_curves, save_figure
from cpmi_lib.presets import experiment_config
from cpmi_lib.prm_experiment import PRM_LABELS, Experiment
from cpmi_lib.tables import save_table

exp = Experiment(experiment_config(preset))
records = {name: json.loads((exp.train(name) / "prm.json").read_text()) for name in PRM_LABELS}

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
